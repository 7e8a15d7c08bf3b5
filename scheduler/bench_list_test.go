package scheduler

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"github.com/google/uuid"
)

// benchListQueued is the outside tester's case: operations of one tenant
// queued, named as the scheduler names them (random UUIDs, so in
// no order of arrival).
const benchListQueued = 200_000

// benchListScheduler is a scheduler with benchListQueued operations
// queued for the tenant "" and no worker.
func benchListScheduler(b *testing.B) *Scheduler {
	s := benchScheduler(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range benchListQueued {
		sub := benchSubmission(i)
		sub.name = "operations/" + uuid.NewString()
		if _, err := s.core.Execute(s.clock.Now(), sub); err != nil {
			b.Fatal(err)
		}
		if i%1000 == 0 {
			s.apply()
		}
	}
	s.apply()
	return s
}

// BenchmarkListOperations200k: one page through the Operations service,
// with 200,000 operations of the caller's queued: the first page, a page
// from the middle (its token a name in the middle of the order), and the
// default page size (1,000), and a filter that matches none of them (the
// whole tenant is looked at).
func BenchmarkListOperations200k(b *testing.B) {
	s := benchListScheduler(b)
	ops := &operationsService{s: s}
	mid := "operations/8"
	for _, bc := range []struct {
		name string
		req  *longrunningpb.ListOperationsRequest
		want int
	}{
		{"first_page_10", &longrunningpb.ListOperationsRequest{PageSize: 10}, 10},
		{"middle_page_10", &longrunningpb.ListOperationsRequest{PageSize: 10, PageToken: mid}, 10},
		{"default_page_1000", &longrunningpb.ListOperationsRequest{}, 1000},
		{"filter_matching_none", &longrunningpb.ListOperationsRequest{PageSize: 10, Filter: "stage=COMPLETED"}, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := ops.ListOperations(context.Background(), bc.req)
				if err != nil || len(resp.Operations) != bc.want {
					b.Fatalf("%d operations, %v; want %d", len(resp.GetOperations()), err, bc.want)
				}
			}
		})
	}
	// The longest the filtered page holds the scheduler's lock at once:
	// one batch of listBatch operations.
	b.Run("filter_one_batch_under_the_lock", func(b *testing.B) {
		f, err := parseFilter("stage=COMPLETED")
		if err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			s.mu.Lock()
			_, more := s.core.listOwned("", "", f, newOpPage(10))
			s.mu.Unlock()
			if !more {
				b.Fatal("one batch looked at every operation")
			}
		}
	})
}

// BenchmarkGetOperationBesideListings is the tester's stall: GetOperation
// calls, one at a time, while another goroutine lists pages of the
// 200,000 operations without pause (run it for seconds, -benchtime 3s, so
// that the calls meet many pages). Each call waits for the scheduler's
// lock, which the listing holds for as long as one page (or, since the
// index, one batch of it) takes. It reports the calls' 99th percentile
// and longest wait; ns/op is their mean.
func BenchmarkGetOperationBesideListings(b *testing.B) {
	s := benchListScheduler(b)
	ops := &operationsService{s: s}
	s.mu.Lock()
	var name string
	for name = range s.core.ops {
		break
	}
	s.mu.Unlock()
	for _, bc := range []struct {
		name string
		req  *longrunningpb.ListOperationsRequest
	}{
		{"page_10", &longrunningpb.ListOperationsRequest{PageSize: 10}},
		{"filter_matching_none", &longrunningpb.ListOperationsRequest{PageSize: 10, Filter: "stage=COMPLETED"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			stop, listed := make(chan struct{}), make(chan struct{})
			var wg sync.WaitGroup
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					if _, err := ops.ListOperations(context.Background(), bc.req); err != nil {
						b.Error(err)
						return
					}
					if i == 0 {
						close(listed)
					}
				}
			})
			<-listed // the lister is under way
			var waits []time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := ops.GetOperation(context.Background(), &longrunningpb.GetOperationRequest{Name: name}); err != nil {
					b.Fatal(err)
				}
				waits = append(waits, time.Since(start))
			}
			close(stop)
			wg.Wait()
			slices.Sort(waits)
			b.ReportMetric(float64(waits[len(waits)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(waits[len(waits)-1].Microseconds()), "max-µs")
		})
	}
}
