package scheduler

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"

	"github.com/paddock-build/paddock/auth"
)

// Paging through every operation with opPage, page by page with the
// token, gives each name once and in order, for any page size, whatever
// order the operations come in; and a page holds at most its size.
func TestOpPagesCoverEveryOperationOnce(t *testing.T) {
	names := make([]string, 1000)
	for i := range names {
		names[i] = fmt.Sprintf("operations/%08x", rand.Uint32()^uint32(i))
	}
	want := slices.Compact(slices.Sorted(slices.Values(names)))
	for _, size := range []int{1, 7, 100, 999, 1000, 1001, 5000} {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("size %d: paging does not end", size)
			}
			p := newOpPage(size)
			for _, i := range rand.Perm(len(want)) {
				if n := want[i]; n > token && p.wants(n) {
					p.add(opView{name: n})
				}
			}
			views, next := p.result()
			if len(views) > size {
				t.Fatalf("size %d: a page of %d", size, len(views))
			}
			for _, v := range views {
				got = append(got, v.name)
			}
			if next == "" {
				break
			}
			if next != views[len(views)-1].name {
				t.Fatalf("size %d: next token %q, want the page's last name %q", size, next, views[len(views)-1].name)
			}
			token = next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("size %d: pages give %d names, want all %d in order", size, len(got), len(want))
		}
	}
}

// BenchmarkListOperations: one page of 10 out of 100,000 operations; its
// memory is the page's, whatever the number of operations.
func BenchmarkListOperations(b *testing.B) {
	names := make([]string, 100_000)
	for i := range names {
		names[i] = fmt.Sprintf("operations/%08x", rand.Uint32())
	}
	b.ReportAllocs()
	for b.Loop() {
		p := newOpPage(10)
		for _, n := range names {
			if p.wants(n) {
				p.add(opView{name: n})
			}
		}
		p.result()
	}
}

// BenchmarkListOperationsQueued: one page of 10 through the Operations
// service, with 20,000 actions queued (the figure docs/benchmarks.md
// gives before and after opPage).
func BenchmarkListOperationsQueued(b *testing.B) {
	s := benchScheduler(b)
	s.mu.Lock()
	for i := range 20_000 {
		if _, err := s.core.Execute(s.clock.Now(), benchSubmission(i)); err != nil {
			b.Fatal(err)
		}
	}
	s.apply()
	s.mu.Unlock()
	ops := &operationsService{s: s}
	req := &longrunningpb.ListOperationsRequest{Name: "operations", PageSize: 10}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := ops.ListOperations(context.Background(), req)
		if err != nil || len(resp.Operations) != 10 {
			b.Fatalf("%d operations, %v", len(resp.GetOperations()), err)
		}
	}
}

// BenchmarkListOperationsBesideABusyTenant: one page of 10 of a tenant
// with 10 operations, while another tenant has 20,000 queued. The walk
// under the scheduler's lock is the caller's own operations only, so its
// cost does not grow with other tenants' work.
func BenchmarkListOperationsBesideABusyTenant(b *testing.B) {
	s := benchScheduler(b)
	s.mu.Lock()
	for i := range 20_010 {
		sub := benchSubmission(i)
		sub.owner = "busy"
		if i >= 20_000 {
			sub.owner = "quiet"
		}
		if _, err := s.core.Execute(s.clock.Now(), sub); err != nil {
			b.Fatal(err)
		}
	}
	s.apply()
	s.mu.Unlock()
	ops := &operationsService{s: s}
	ctx := auth.NewContext(context.Background(), &auth.Principal{Tenant: "quiet"})
	req := &longrunningpb.ListOperationsRequest{Name: "operations", PageSize: 10}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := ops.ListOperations(ctx, req)
		if err != nil || len(resp.Operations) != 10 {
			b.Fatalf("%d operations, %v", len(resp.GetOperations()), err)
		}
	}
}
