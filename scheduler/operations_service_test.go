package scheduler

import (
	"strings"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
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
