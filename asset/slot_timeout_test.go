package asset_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/asset"
)

// TestFetchTimeoutCountsTheWaitForASlot: a fetch's timeout bounds its
// whole download, the wait for a download slot included: with every slot
// of its tenant held by downloads that do not end, a fetch with a short
// timeout ends DEADLINE_EXCEEDED within it, instead of starting whenever
// a slot comes free.
func TestFetchTimeoutCountsTheWaitForASlot(t *testing.T) {
	content := []byte("slow content\n")
	entered := make(chan struct{}, asset.MaxDownloads)
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/slow/", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		_, _ = w.Write(content) // the client may be gone
	})
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	o := httptest.NewServer(mux)
	t.Cleanup(o.Close)
	releaseOnce := func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}
	t.Cleanup(releaseOnce)
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")} })
	ctx := readsStatus(t)
	var held sync.WaitGroup
	for i := range asset.MaxDownloads / 2 { // one tenant's slots
		held.Go(func() {
			// Held until the test ends; only the slot it takes matters.
			_, _ = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{fmt.Sprintf("%s/slow/%d", o.URL, i)}, Qualifiers: q("checksum.sri", sri(content))})
		})
		<-entered
	}
	const timeout = 300 * time.Millisecond
	type result struct {
		resp *rapb.FetchBlobResponse
		err  error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"},
			Qualifiers: q("checksum.sri", sri(content)), Timeout: durationpb.New(timeout)})
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		if r.err != nil || codes.Code(r.resp.Status.GetCode()) != codes.DeadlineExceeded || !strings.Contains(r.resp.Status.GetMessage(), "slot") {
			t.Fatalf("fetch while the slots are held: %v, %v; want DEADLINE_EXCEEDED waiting for a slot", r.resp, r.err)
		}
		if elapsed := time.Since(start); elapsed < timeout {
			t.Errorf("ended after %s, before its timeout of %s", elapsed, timeout)
		}
		releaseOnce()
		held.Wait()
	case <-time.After(10 * time.Second):
		releaseOnce()
		r := <-done
		t.Fatalf("the fetch with a timeout of %s was still waiting for a slot after 10s (then: %v, %v)", timeout, r.resp, r.err)
	}
}
