package scheduler

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// workerService is the gRPC edge of the worker protocol.
type workerService struct {
	workerpb.UnimplementedWorkerServiceServer
	s *Scheduler
}

// Connect runs one worker session: Register first, then a receiver
// goroutine applies the worker's messages while this one sends the
// scheduler's.
func (w *workerService) Connect(stream workerpb.WorkerService_ConnectServer) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	reg := first.GetRegister()
	if reg == nil {
		return status.Error(codes.InvalidArgument, "the first message of a worker stream must be register")
	}
	sess, err := w.s.connectWorker(stream.Context(), reg)
	if err != nil {
		return err
	}
	defer sess.close()
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err == nil {
				err = sess.handle(m)
			}
			if err != nil {
				recvErr <- err
				cancel()
				return
			}
		}
	}()
	for {
		ms, err := sess.next(ctx)
		if err != nil {
			select {
			case rerr := <-recvErr:
				if errors.Is(rerr, io.EOF) {
					return nil // the worker closed its side: a clean goodbye
				}
				return rerr
			default:
				return err
			}
		}
		for _, m := range ms {
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// adminService is the gRPC edge of the operators' calls.
type adminService struct {
	workerpb.UnimplementedAdminServiceServer
	s *Scheduler
}

func (a *adminService) DrainWorker(ctx context.Context, req *workerpb.DrainWorkerRequest) (*workerpb.DrainWorkerResponse, error) {
	if req.WorkerId == "" {
		return nil, status.Error(codes.InvalidArgument, "worker_id: must not be empty")
	}
	n, err := a.s.Drain(ctx, req.WorkerId, req.Wait)
	if err != nil {
		return nil, err
	}
	return &workerpb.DrainWorkerResponse{WorkerId: req.WorkerId, Idle: n == 0, Running: int32(n)}, nil
}

func (a *adminService) UndrainWorker(ctx context.Context, req *workerpb.UndrainWorkerRequest) (*workerpb.UndrainWorkerResponse, error) {
	if req.WorkerId == "" {
		return nil, status.Error(codes.InvalidArgument, "worker_id: must not be empty")
	}
	n, err := a.s.Undrain(req.WorkerId)
	if err != nil {
		return nil, err
	}
	return &workerpb.UndrainWorkerResponse{WorkerId: req.WorkerId, Running: int32(n)}, nil
}

func (a *adminService) ListWorkers(ctx context.Context, req *workerpb.ListWorkersRequest) (*workerpb.ListWorkersResponse, error) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	return &workerpb.ListWorkersResponse{Workers: a.s.core.Workers()}, nil
}
