package scheduler

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
)

// ListOperations refuses, naming the field, what it does not serve:
// return_partial_success (UNIMPLEMENTED, as google.longrunning asks of a
// service that does not document it), a parent other than "operations",
// and a page token it did not return. Each was ignored, and answered OK
// with a list that was not the one asked for (a garbage token: none).
// Pages still chain through next_page_token, with either parent.
func TestListOperationsRefusesWhatItDoesNotServe(t *testing.T) {
	f := startFarm(t, testConfig(), "", nil, nil)
	ctx := ctxTimeout(t)
	var names []string
	for _, salt := range []string{"1", "2"} {
		op, err := must(f.exec.Execute(ctx, executeRequest(f.action(t, salt, nil)))).Recv()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, op.Name)
	}
	if names[1] < names[0] {
		names[0], names[1] = names[1], names[0]
	}

	for _, tc := range []struct {
		req   *longrunningpb.ListOperationsRequest
		code  codes.Code
		field string
	}{
		{&longrunningpb.ListOperationsRequest{ReturnPartialSuccess: true}, codes.Unimplemented, "return_partial_success"},
		{&longrunningpb.ListOperationsRequest{Name: "some/other/parent"}, codes.InvalidArgument, "name"},
		{&longrunningpb.ListOperationsRequest{Name: "operations/"}, codes.InvalidArgument, "name"},
		{&longrunningpb.ListOperationsRequest{PageToken: "zzzz-garbage"}, codes.InvalidArgument, "page_token"},
		{&longrunningpb.ListOperationsRequest{PageToken: "operations/"}, codes.InvalidArgument, "page_token"},
		{&longrunningpb.ListOperationsRequest{PageToken: "operations/../x"}, codes.InvalidArgument, "page_token"},
		{&longrunningpb.ListOperationsRequest{PageSize: -1}, codes.InvalidArgument, "page_size"},
	} {
		resp, err := f.ops.ListOperations(ctx, tc.req)
		if st := status.Convert(err); st.Code() != tc.code || !strings.HasPrefix(st.Message(), tc.field+":") {
			t.Errorf("ListOperations(%v) = %d operations, %v; want %v naming %s", tc.req, len(resp.GetOperations()), err, tc.code, tc.field)
		}
	}

	for _, parent := range []string{"", "operations"} {
		first, err := f.ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: parent, PageSize: 1})
		if err != nil || len(first.Operations) != 1 || first.Operations[0].Name != names[0] || first.NextPageToken == "" {
			t.Fatalf("ListOperations(name %q, page_size 1) = %v, %v; want %s and a next page", parent, first, err, names[0])
		}
		next, err := f.ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Name: parent, PageSize: 1, PageToken: first.NextPageToken})
		if err != nil || len(next.Operations) != 1 || next.Operations[0].Name != names[1] || next.NextPageToken != "" {
			t.Fatalf("ListOperations(name %q, its next_page_token) = %v, %v; want %s, the last page", parent, next, err, names[1])
		}
	}
}

// Pages of ListOperations, chained by their tokens, give exactly the
// caller's operations that match the filter, in name order, each page
// as full as its size allows and no empty page at the end, for any page
// size and filter. The tenant has more operations than listBatch, and
// the completed ones are few and scattered, so a page of them spans
// batches (the scheduler's lock is let go between them).
func TestListOperationsPagesMatchEveryFilter(t *testing.T) {
	s := benchScheduler(t)
	rng := rand.New(rand.NewPCG(7, 8))
	s.mu.Lock()
	for i := range 6000 {
		owner, instance := "a", []string{"", "x"}[rng.IntN(2)]
		if i%10 == 0 {
			owner = "b"
		}
		name := randomOpName(rng)
		if rng.IntN(200) == 0 {
			s.core.AddCompleted(s.clock.Now(), name, instance, owner, actionDigest(name), &repb.ExecuteResponse{CachedResult: true})
			continue
		}
		sub := benchSubmission(i)
		sub.name, sub.owner, sub.instance = name, owner, instance
		if _, err := s.core.Execute(s.clock.Now(), sub); err != nil {
			t.Fatal(err)
		}
	}
	s.apply()
	s.mu.Unlock()
	ops := &operationsService{s: s}
	ctx := auth.NewContext(context.Background(), &auth.Principal{Tenant: "a"})

	for _, filter := range []string{"", "stage=COMPLETED", "stage=QUEUED AND instance=x", `instance=""`, "stage=EXECUTING"} {
		f, err := parseFilter(filter)
		if err != nil {
			t.Fatal(err)
		}
		s.mu.Lock()
		var want []string
		for _, op := range s.core.ops {
			if op.owner == "a" && f.match(op.view()) {
				want = append(want, op.name)
			}
		}
		s.mu.Unlock()
		slices.Sort(want)
		if filter == "stage=COMPLETED" && (len(want) < 5 || len(want) > 100) {
			t.Fatalf("%d completed operations; the test wants a few, scattered", len(want))
		}
		for _, size := range []int32{0, 1, 7, 1000} {
			eff := int(size)
			if eff == 0 {
				eff = 1000
			}
			var got []string
			token, pages := "", 0
			for {
				resp, err := ops.ListOperations(ctx, &longrunningpb.ListOperationsRequest{Filter: filter, PageSize: size, PageToken: token})
				if err != nil {
					t.Fatal(err)
				}
				pages++
				if n := len(resp.Operations); n > eff || (resp.NextPageToken != "" && n != eff) {
					t.Fatalf("filter %q, page_size %d: a page of %d with next token %q", filter, size, n, resp.NextPageToken)
				}
				for _, op := range resp.Operations {
					got = append(got, op.Name)
				}
				if resp.NextPageToken == "" {
					break
				}
				if last := resp.Operations[len(resp.Operations)-1].Name; resp.NextPageToken != last {
					t.Fatalf("filter %q, page_size %d: next token %q, want the page's last name %q", filter, size, resp.NextPageToken, last)
				}
				token = resp.NextPageToken
			}
			if !slices.Equal(got, want) {
				t.Fatalf("filter %q, page_size %d: pages give %d names, want %d in order", filter, size, len(got), len(want))
			}
			if wantPages := max(1, (len(want)+eff-1)/eff); pages != wantPages {
				t.Fatalf("filter %q, page_size %d: %d pages for %d operations, want %d", filter, size, pages, len(want), wantPages)
			}
		}
	}
}
