package statuspage_test

import (
	"context"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/api/workerpb/workerclient"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/nettest"
)

// workerRowOf is the overview's row of the worker id ("" if none).
func workerRowOf(page, id string) string {
	i := strings.Index(page, `<td class="worker-id">`+id+`</td>`)
	if i < 0 {
		return ""
	}
	row := page[i:]
	if end := strings.Index(row, "</tr>"); end >= 0 {
		row = row[:end]
	}
	return row
}

// TestPausedWorkerIsShownWithItsReason: a worker that says it cannot run
// actions now (Register.paused, Heartbeat.paused) is shown paused on its
// row, with its reason (as text, never markup), beside its state; other
// workers' rows are not; and the mark goes when the worker resumes.
func TestPausedWorkerIsShownWithItsReason(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	waitWorker(t, f)
	srv := newServer(t, f)
	c, err := workerclient.New(workerclient.Options{
		Conn:     f.Conn,
		Register: &workerpb.Register{WorkerId: "paused-w", Concurrency: 1, Platform: []*workerpb.Property{{Name: "Pool", Value: "paused"}}},
		Handler: func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
			t.Errorf("the paused worker was given %s", a.OperationName)
			return &repb.ExecuteResponse{}
		},
		ReconnectDelay: 20 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	c.SetPaused(true, "runner not ready: <b>gone</b>")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }() // returns ctx's error at cleanup
	t.Cleanup(func() { cancel(); <-done })

	// waitPaused waits until the scheduler lists paused-w in that state.
	waitPaused := func(paused bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			for _, w := range f.Scheduler.Workers() {
				if w.ID == "paused-w" && w.Paused == paused {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("the scheduler never listed paused-w with paused %v: %+v", paused, f.Scheduler.Workers())
			}
			time.Sleep(10 * time.Millisecond) // polling, with the deadline above
		}
	}
	waitPaused(true)
	code, page := nettest.HTTPGet(t, srv.URL+"/")
	row := workerRowOf(page, "paused-w")
	if code != 200 || !strings.Contains(row, `<td class="state">idle<br><span class="paused bad">paused: runner not ready: &lt;b&gt;gone&lt;/b&gt;</span></td>`) {
		t.Fatalf("overview: %d, want paused-w's row to show it idle and paused, with its reason; row:\n%s\npage:\n%s", code, row, page)
	}
	if other := workerRowOf(page, "farmtest"); other == "" || strings.Contains(other, "paused") {
		t.Errorf("the row of farmtest, which is not paused:\n%s", other)
	}

	c.SetPaused(false, "")
	waitPaused(false)
	_, page = nettest.HTTPGet(t, srv.URL+"/")
	if row := workerRowOf(page, "paused-w"); row == "" || strings.Contains(row, "paused bad") || strings.Contains(row, "runner not ready") {
		t.Errorf("after paused-w resumed, its row:\n%s", row)
	}
}
