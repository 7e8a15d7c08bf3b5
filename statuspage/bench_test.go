package statuspage_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/statuspage"
	"github.com/paddock-build/paddock/storage"
)

// BenchmarkOverview10kQueued renders the overview of a scheduler with
// 10,000 queued operations (no worker), the first page and a page deep in
// the list. The page's budget is 200 ms of server time (issue 14).
func BenchmarkOverview10kQueued(b *testing.B) {
	const n = 10000
	cas, ac := storage.NewMemoryBlobStore(), storage.NewMemoryActionCache()
	sched, err := scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: cas, ActionCache: ac})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(sched.Close) // after the server has stopped
	conn := grpctest.Serve(b, sched.Register)
	exec := repb.NewExecutionClient(conn)
	root := put(b, cas, &repb.Directory{})
	for i := range n {
		cmd := put(b, cas, &repb.Command{Arguments: []string{"/bin/echo", fmt.Sprint("action ", i)}})
		ad := put(b, cas, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: root.Proto()})
		// The operation stays queued once the client stops following it.
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.Proto()})
		if err == nil {
			_, err = stream.Recv()
		}
		cancel()
		if err != nil {
			b.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	statuspage.New(statuspage.Options{Scheduler: sched, CAS: cas, AC: ac}).Register(mux)
	for _, url := range []string{"/", "/?stage=queued&page=150"} {
		b.Run(url, func(b *testing.B) {
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest("GET", url, nil)
				// Without a policy the page answers only to a loopback
				// Host (against DNS rebinding); httptest's is example.com.
				req.Host = "127.0.0.1"
				mux.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s: %d %s", url, rec.Code, rec.Body)
				}
			}
		})
	}
}
