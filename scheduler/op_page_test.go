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

// listAll pages through owner's operations on c as ListOperations does:
// listOwned, batch after batch, until the page is full or the operations
// end.
func listAll(c *core, owner, token string, size int, f opFilter) ([]opView, string) {
	page := newOpPage(size)
	for after, more := token, true; more; {
		after, more = c.listOwned(owner, after, f, page)
	}
	return page.result()
}

// Paging through every operation, page by page with the token, gives
// each name once and in order, for any page size, whatever order the
// operations came in; and a page holds at most its size. There are more
// operations than listBatch, so pages span batches.
func TestOpPagesCoverEveryOperationOnce(t *testing.T) {
	c := newCore(DefaultConfig())
	names := make([]string, 5000)
	for i := range names {
		names[i] = fmt.Sprintf("operations/%08x", rand.Uint32()^uint32(i))
		if c.ops[names[i]] == nil {
			c.addOp(&operation{name: names[i]})
		}
	}
	want := slices.Compact(slices.Sorted(slices.Values(names)))
	for _, size := range []int{1, 7, 100, 999, 1000, 1001, 5000, 6000} {
		var got []string
		token := ""
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("size %d: paging does not end", size)
			}
			views, next := listAll(c, "", token, size, opFilter{})
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

// BenchmarkListOperations: one page of 10 out of 100,000 operations, from
// a token in the middle; its memory is the page's, whatever the number
// of operations.
func BenchmarkListOperations(b *testing.B) {
	c := newCore(DefaultConfig())
	for range 100_000 {
		c.addOp(&operation{name: fmt.Sprintf("operations/%08x", rand.Uint32())})
	}
	b.ReportAllocs()
	for b.Loop() {
		if views, _ := listAll(c, "", "operations/8", 10, opFilter{}); len(views) != 10 {
			b.Fatalf("a page of %d", len(views))
		}
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
