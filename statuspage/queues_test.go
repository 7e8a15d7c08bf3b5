package statuspage_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/statuspage"
	"github.com/paddock-build/paddock/storage"
)

// TestOverviewListsTheLargestQueues: the overview lists at most 100
// queues, the largest first, and sums the rest in one row. Queues are
// keyed by the instance names clients choose: 20,000 of them made a
// 22 MB page that an open tab rendered every few seconds.
func TestOverviewListsTheLargestQueues(t *testing.T) {
	cas, ac := storage.NewMemoryBlobStore(), storage.NewMemoryActionCache()
	sched, err := scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: cas, ActionCache: ac})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sched.Close) // after the server has stopped
	exec := repb.NewExecutionClient(grpctest.Serve(t, sched.Register))
	root := put(t, cas, &repb.Directory{})
	queue := func(instance string, i int) {
		cmd := put(t, cas, &repb.Command{Arguments: []string{"/bin/echo", fmt.Sprint(instance, i)}})
		ad := put(t, cas, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: root.Proto()})
		// No worker: the operation stays queued once the client stops
		// following it.
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stream, err := exec.Execute(ctx, &repb.ExecuteRequest{InstanceName: instance, ActionDigest: ad.Proto()})
		if err == nil {
			_, err = stream.Recv()
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		queue("zz-largest", i)
	}
	for i := range 150 {
		queue(fmt.Sprintf("small-%03d", i), 0)
	}
	mux := http.NewServeMux()
	statuspage.New(statuspage.Options{Scheduler: sched, CAS: cas, AC: ac}).Register(mux)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Host = "127.0.0.1" // without a policy the page answers a loopback Host only
	mux.ServeHTTP(rec, req)
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /: %d %s", rec.Code, body)
	}
	if n := strings.Count(body, `class="queue"`); n != 100 {
		t.Errorf("the overview lists %d queues, want 100", n)
	}
	first := strings.Index(body, `class="queue"`)
	if first < 0 || !strings.HasPrefix(body[first:], `class="queue"><td>zz-largest</td>`) {
		t.Errorf("the largest queue is not listed first:\n%.300s", body[max(first, 0):])
	}
	if !strings.Contains(body, `<tr id="more-queues"><td colspan="2">51 more queues, not listed</td><td>51</td>`) {
		t.Errorf("no row sums the 51 queues not listed:\n%s", body)
	}
}
