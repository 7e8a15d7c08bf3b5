package statuspage_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/paddock-build/paddock/statuspage"
)

// BenchmarkOverview10kQueued renders the overview of a scheduler with
// 10,000 queued operations (no worker), the first page and a page deep in
// the list. The page's budget is 200 ms of server time (issue 14).
func BenchmarkOverview10kQueued(b *testing.B) {
	const n = 10000
	u := newUnserved(b)
	for i := range n {
		u.queue("", "/bin/echo", fmt.Sprint("action ", i))
	}
	mux := http.NewServeMux()
	statuspage.New(statuspage.Options{Scheduler: u.sched, CAS: u.cas, AC: u.ac}).Register(mux)
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
