package scheduler

import (
	"context"
	"strings"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/rev2"
)

// operationsService is the gRPC edge of google.longrunning.Operations over
// the scheduler's operations.
type operationsService struct {
	longrunningpb.UnimplementedOperationsServer
	s        *Scheduler
	listings tenantGate // ListOperations: one per tenant at a time
}

func (o *operationsService) GetOperation(ctx context.Context, req *longrunningpb.GetOperationRequest) (*longrunningpb.Operation, error) {
	o.s.mu.Lock()
	v, ok := o.s.core.Operation(req.Name)
	ok = ok && v.owner == auth.TenantOf(ctx)
	if ok {
		o.s.followers.touch(req.Name, o.s.clock.Now()) // the owner's poll counts as following
	}
	o.s.mu.Unlock()
	if !ok {
		return nil, errOperationNotFound(req.Name, "")
	}
	if err := waitToSend(ctx, v); err != nil {
		return nil, err
	}
	return toOperation(v), nil
}

// ListOperations lists operations in name order. The filter is a
// conjunction ("AND") of terms stage=QUEUED|EXECUTING|COMPLETED and
// instance=NAME (instance="" for the default instance). Only the caller's
// own operations are listed. A page is read from the caller's index
// (opIndex) where its token points, in batches of at most listBatch
// operations under the scheduler's lock, which is let go between them:
// a page with a filter that few operations match does not hold up every
// other call, and each operation on it is as it was when its batch was
// read.
func (o *operationsService) ListOperations(ctx context.Context, req *longrunningpb.ListOperationsRequest) (*longrunningpb.ListOperationsResponse, error) {
	if err := checkListRequest(req); err != nil {
		return nil, err
	}
	f, err := parseFilter(req.Filter)
	if err != nil {
		return nil, err
	}
	size := int(req.PageSize)
	if size <= 0 || size > 1000 {
		size = 1000
	}
	owner := auth.TenantOf(ctx)
	// One listing per tenant at a time: a filtered page may look at all
	// the tenant's operations, in batches under the scheduler's lock,
	// which every call and dispatch needs, so a tenant with many listing
	// at once would delay everyone.
	done, err := o.listings.take(ctx, owner)
	if err != nil {
		return nil, err
	}
	defer done()
	page := newOpPage(size)
	for after, more := req.PageToken, true; more; {
		o.s.mu.Lock()
		after, more = o.s.core.listOwned(owner, after, f, page)
		o.s.mu.Unlock()
	}
	views, next := page.result()
	if err := waitToSend(ctx, views...); err != nil {
		return nil, err
	}
	resp := &longrunningpb.ListOperationsResponse{NextPageToken: next}
	for _, v := range views {
		resp.Operations = append(resp.Operations, toOperation(v))
	}
	return resp, nil
}

func (o *operationsService) DeleteOperation(ctx context.Context, req *longrunningpb.DeleteOperationRequest) (*emptypb.Empty, error) {
	err := o.change(ctx, req.Name, func(now time.Time) error {
		if err := o.s.core.Delete(now, req.Name); err != nil {
			return err
		}
		o.s.followers.forget(req.Name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

func (o *operationsService) CancelOperation(ctx context.Context, req *longrunningpb.CancelOperationRequest) (*emptypb.Empty, error) {
	if err := o.change(ctx, req.Name, func(now time.Time) error { return o.s.core.Cancel(now, req.Name) }); err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// change makes a change to the operation name for its owner only: under
// the scheduler's lock it checks the caller owns name, runs do at the
// clock's time and applies the core's effects; then it waits until they
// are durable. DeleteOperation and CancelOperation are both this, so they
// check ownership and persist the same way.
func (o *operationsService) change(ctx context.Context, name string, do func(now time.Time) error) error {
	o.s.mu.Lock()
	if err := o.s.checkOwner(ctx, name); err != nil {
		o.s.mu.Unlock()
		return err
	}
	if err := do(o.s.clock.Now()); err != nil {
		o.s.mu.Unlock()
		return err
	}
	seq := o.s.apply()
	o.s.mu.Unlock()
	return o.s.waitDurable(ctx, seq)
}

// WaitOperation waits until the operation is done, the request's timeout
// passes or the call's deadline, and returns its latest state.
func (o *operationsService) WaitOperation(ctx context.Context, req *longrunningpb.WaitOperationRequest) (*longrunningpb.Operation, error) {
	if req.Timeout != nil {
		if err := req.Timeout.CheckValid(); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "timeout: %v", err)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.Timeout.AsDuration())
		defer cancel()
	}
	v, err := o.s.wait(ctx, req.Name, auth.TenantOf(ctx))
	if err == nil {
		err = waitToSend(ctx, v)
	}
	if err != nil {
		return nil, err
	}
	return toOperation(v), nil
}

// checkOwner answers NOT_FOUND for an operation that does not exist or
// belongs to another tenant than ctx's caller: the same answer, so that a
// tenant learns nothing of others' operations. Called with s.mu held.
func (s *Scheduler) checkOwner(ctx context.Context, name string) error {
	if v, ok := s.core.Operation(name); !ok || v.owner != auth.TenantOf(ctx) {
		return errOperationNotFound(name, "")
	}
	return nil
}

// operationsParent is the collection every operation name is in
// ("operations/" + id), the one parent ListOperations lists.
const operationsParent = "operations"

// checkListRequest refuses, naming the field, a listing the scheduler
// would otherwise answer as if it were another: before, a garbage page
// token or another parent got OK and a list (perhaps empty) that was not
// the one asked for, and return_partial_success, which
// google.longrunning says is UNIMPLEMENTED unless a service documents it,
// was ignored.
func checkListRequest(req *longrunningpb.ListOperationsRequest) error {
	if req.ReturnPartialSuccess {
		return status.Error(codes.Unimplemented, "return_partial_success: not supported (every operation is in one collection, none is ever unreachable)")
	}
	if req.Name != "" && req.Name != operationsParent {
		return status.Errorf(codes.InvalidArgument, "name: %s is not a parent of this scheduler's operations: give %q or leave it empty", rev2.Quote(req.Name), operationsParent)
	}
	// A page token is the name of the last operation of the page before
	// (opPage.result); that operation may be gone since, so only its form
	// (operations/ID, ID one path segment) is checked.
	if req.PageSize < 0 {
		return status.Errorf(codes.InvalidArgument, "page_size: %d is negative; give 0 for the default (1,000) or up to 1,000", req.PageSize)
	}
	if id, ok := strings.CutPrefix(req.PageToken, operationsParent+"/"); req.PageToken != "" && (!ok || id == "" || strings.Contains(id, "/")) {
		return status.Errorf(codes.InvalidArgument, "page_token: %s is not a token this scheduler returned (next_page_token)", rev2.Quote(req.PageToken))
	}
	return nil
}

type opFilter struct {
	stage    repb.ExecutionStage_Value
	instance *string
}

func parseFilter(s string) (opFilter, error) {
	var f opFilter
	if strings.TrimSpace(s) == "" {
		return f, nil
	}
	for _, term := range strings.Split(s, " AND ") {
		k, v, ok := strings.Cut(strings.TrimSpace(term), "=")
		if !ok {
			return f, status.Errorf(codes.InvalidArgument, "filter: term %s is not key=value", rev2.Quote(term))
		}
		v = strings.Trim(strings.TrimSpace(v), `"`)
		switch strings.TrimSpace(k) {
		case "stage":
			st, ok := repb.ExecutionStage_Value_value[strings.ToUpper(v)]
			if !ok || st == 0 {
				return f, status.Errorf(codes.InvalidArgument, "filter: stage %s is not QUEUED, EXECUTING or COMPLETED", rev2.Quote(v))
			}
			f.stage = repb.ExecutionStage_Value(st)
		case "instance":
			f.instance = &v
		default:
			return f, status.Errorf(codes.InvalidArgument, "filter: unknown key %s (stage, instance)", rev2.Quote(k))
		}
	}
	return f, nil
}

func (f opFilter) match(v opView) bool {
	if f.stage != 0 && v.stage != f.stage {
		return false
	}
	if f.instance != nil && v.instance != *f.instance {
		return false
	}
	return true
}
