package statuspage_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/statuspage"
)

// TestOverviewListsTheLargestQueues: the overview lists at most 100
// queues, the largest first, and sums the rest in one row. Queues are
// keyed by the instance names clients choose: 20,000 of them made a
// 22 MB page that an open tab rendered every few seconds.
func TestOverviewListsTheLargestQueues(t *testing.T) {
	u := newUnserved(t)
	for i := range 3 {
		u.queue("zz-largest", "/bin/echo", fmt.Sprint(i))
	}
	for i := range 150 {
		name := fmt.Sprintf("small-%03d", i)
		u.queue(name, "/bin/echo", name)
	}
	mux := http.NewServeMux()
	statuspage.New(statuspage.Options{Scheduler: u.sched, CAS: u.cas, AC: u.ac}).Register(mux)
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
