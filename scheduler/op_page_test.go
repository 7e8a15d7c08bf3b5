package scheduler

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

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

// A page ends before the operation that would take it past what a client
// receives by default, with a token from which the next goes on: two
// finished operations of 3.7 MB results made a default page no client
// could receive. One operation alone is a page, whatever its size.
func TestOpPagesAreBoundedInBytes(t *testing.T) {
	c := newCore(DefaultConfig())
	big := &repb.ExecuteResponse{Result: &repb.ActionResult{StdoutRaw: bytes.Repeat([]byte("o"), 1500<<10)}}
	huge := &repb.ExecuteResponse{Result: &repb.ActionResult{StdoutRaw: bytes.Repeat([]byte("h"), maxPageBytes)}}
	var want []string
	for i := range 7 {
		op := &operation{name: fmt.Sprintf("operations/%02d", i), done: true, response: big}
		if i == 3 {
			op.response = huge
		}
		c.addOp(op)
		want = append(want, op.name)
	}
	var got []int
	var names []string
	for token, pages := "", 0; pages == 0 || token != ""; pages++ {
		if pages > len(want) {
			t.Fatal("paging does not end")
		}
		views, next := listAll(c, "", token, 1000, opFilter{})
		var n int64
		for _, v := range views {
			names = append(names, v.name)
			n += opSize(v)
		}
		if len(views) > 1 && n > maxPageBytes {
			t.Fatalf("a page of %d operations takes %d bytes, past %d", len(views), n, maxPageBytes)
		}
		got = append(got, len(views))
		token = next
	}
	if !slices.Equal(names, want) {
		t.Fatalf("pages give %v, want %v", names, want)
	}
	if !slices.Equal(got, []int{2, 1, 1, 2, 1}) {
		t.Fatalf("pages of %v operations, want 2, 1, 1 (the huge one alone), 2, 1", got)
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
