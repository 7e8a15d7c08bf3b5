package client

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// restartingScheduler is an Execution service whose first Execute stream
// breaks after naming its operation, as a scheduler that restarts does.
type restartingScheduler struct {
	repb.UnimplementedExecutionServer
	down   int  // WaitExecution calls answered UNAVAILABLE first (still down)
	forgot bool // then NOT_FOUND: restarted without its journal
	failed bool // the operation itself ends with an UNAVAILABLE error

	mu              sync.Mutex
	executes, waits int
}

func done(exit int32) *longrunningpb.Operation {
	resp, _ := anypb.New(&repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: exit}})
	return &longrunningpb.Operation{Name: "operations/x", Done: true, Result: &longrunningpb.Operation_Response{Response: resp}}
}

func (s *restartingScheduler) Execute(_ *repb.ExecuteRequest, stream grpc.ServerStreamingServer[longrunningpb.Operation]) error {
	s.mu.Lock()
	s.executes++
	n := s.executes
	s.mu.Unlock()
	if n > 1 {
		return stream.Send(done(3))
	}
	if s.failed {
		return stream.Send(&longrunningpb.Operation{Name: "operations/x", Done: true,
			Result: &longrunningpb.Operation_Error{Error: status.New(codes.Unavailable, "the worker went away").Proto()}})
	}
	if err := stream.Send(&longrunningpb.Operation{Name: "operations/x"}); err != nil {
		return err
	}
	return status.Error(codes.Unavailable, "the scheduler is stopping")
}

func (s *restartingScheduler) WaitExecution(req *repb.WaitExecutionRequest, stream grpc.ServerStreamingServer[longrunningpb.Operation]) error {
	s.mu.Lock()
	s.waits++
	n := s.waits
	s.mu.Unlock()
	switch {
	case req.Name != "operations/x":
		return status.Error(codes.InvalidArgument, "wrong name")
	case n <= s.down:
		return status.Error(codes.Unavailable, "connection refused")
	case s.forgot:
		return status.Error(codes.NotFound, "operations/x is not known")
	}
	return stream.Send(done(7))
}

// TestExecuteResumesAcrossARestart: a broken Execute stream is resumed
// with WaitExecution after pauses, past more than a few refusals (a
// restart takes seconds); an operation the scheduler forgot is executed
// again; an operation that itself failed is not resumed.
func TestExecuteResumesAcrossARestart(t *testing.T) {
	fast := &RetryPolicy{Retries: DefaultRetries, FirstPause: time.Millisecond}
	for _, tc := range []struct {
		name            string
		s               *restartingScheduler
		exit            int32
		code            codes.Code
		executes, waits int
	}{
		{"down for 6 tries", &restartingScheduler{down: 6}, 7, codes.OK, 1, 7},
		{"restarted without its journal", &restartingScheduler{forgot: true}, 3, codes.OK, 2, 1},
		{"the operation failed", &restartingScheduler{failed: true}, 0, codes.Unavailable, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := grpctest.Serve(t, func(g *grpc.Server) { repb.RegisterExecutionServer(g, tc.s) })
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			resp, err := New(conn, Options{Retry: fast}).Execute(ctx, &repb.ExecuteRequest{ActionDigest: &repb.Digest{Hash: "a", SizeBytes: 1}})
			if status.Code(err) != tc.code || tc.code == codes.OK && resp.GetResult().GetExitCode() != tc.exit {
				t.Errorf("Execute: %v, %v; want %v with exit code %d", resp, err, tc.code, tc.exit)
			}
			if tc.s.executes != tc.executes || tc.s.waits != tc.waits {
				t.Errorf("%d Executes and %d WaitExecutions, want %d and %d", tc.s.executes, tc.s.waits, tc.executes, tc.waits)
			}
		})
	}
}

// blockingScheduler names its operation on Execute, says so on started,
// and then holds the stream open until the server stops.
type blockingScheduler struct {
	repb.UnimplementedExecutionServer
	started chan struct{}
}

func (s blockingScheduler) Execute(_ *repb.ExecuteRequest, stream grpc.ServerStreamingServer[longrunningpb.Operation]) error {
	// A name that does not reach the client is executed again, which the
	// test allows (see the second server).
	_ = stream.Send(&longrunningpb.Operation{Name: "operations/x"})
	s.started <- struct{}{}
	<-stream.Context().Done()
	return stream.Context().Err()
}

// TestExecuteResumesAcrossARealRestart: the scheduler's server stops
// under a following client and starts again on its address only after the
// client has failed to connect a few times. Each failed attempt to open
// the resumed stream is one more break, not the end: the client gets its
// result from the restarted server.
func TestExecuteResumesAcrossARealRestart(t *testing.T) {
	// 12 breaks from 20 ms last about 9 s: room on a loaded machine for
	// the three refused dials the test waits for, and the reconnect after.
	retry := &RetryPolicy{Retries: 12, FirstPause: 20 * time.Millisecond, MaxPause: 1280 * time.Millisecond}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	first := grpc.NewServer()
	started := make(chan struct{}, 1)
	repb.RegisterExecutionServer(first, blockingScheduler{started: started})
	go func() { _ = first.Serve(lis) }() // returns when the test stops the server
	dialer, refused := refusedDials()
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 10 * time.Millisecond, Multiplier: 1.5, MaxDelay: 100 * time.Millisecond}}),
		dialer)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	result := make(chan error, 1)
	go func() {
		resp, err := New(conn, Options{Retry: retry}).Execute(t.Context(), &repb.ExecuteRequest{ActionDigest: &repb.Digest{Hash: "a", SizeBytes: 1}})
		if code := resp.GetResult().GetExitCode(); err == nil && code != 7 && code != 3 {
			err = fmt.Errorf("exit code %d, want 7 (resumed) or 3 (executed again)", code)
		}
		result <- err
	}()
	<-started    // the client's Execute is being served
	first.Stop() // the restart: the stream breaks, the port refuses
	awaitRefusedDials(t, "Execute", refused, result, 3)
	lis2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	second := grpc.NewServer()
	// It knows the operation (a journal) and ends it; an Execute again
	// (the first server stopped before its name reached the client) ends
	// at once too.
	repb.RegisterExecutionServer(second, &restartingScheduler{executes: 1})
	go func() { _ = second.Serve(lis2) }() // returns when the test stops the server
	defer second.Stop()
	awaitCallResult(t, "Execute after the scheduler came back", result)
}

// endlessScheduler answers every Execute and WaitExecution with one
// unfinished operation and ends the stream at once.
type endlessScheduler struct {
	repb.UnimplementedExecutionServer
	mu    sync.Mutex
	calls int
}

func (s *endlessScheduler) send(stream grpc.ServerStreamingServer[longrunningpb.Operation]) error {
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	return stream.Send(&longrunningpb.Operation{Name: "operations/x"})
}

func (s *endlessScheduler) Execute(_ *repb.ExecuteRequest, stream grpc.ServerStreamingServer[longrunningpb.Operation]) error {
	return s.send(stream)
}

func (s *endlessScheduler) WaitExecution(_ *repb.WaitExecutionRequest, stream grpc.ServerStreamingServer[longrunningpb.Operation]) error {
	return s.send(stream)
}

// TestExecuteGivesUpOnStreamsThatEndAtOnce: a stream that brings one
// message and ends is a break like any other unless it lasted a while,
// so a server doing that for ever gets Retries resumes, not endless ones.
func TestExecuteGivesUpOnStreamsThatEndAtOnce(t *testing.T) {
	s := &endlessScheduler{}
	conn := grpctest.Serve(t, func(g *grpc.Server) { repb.RegisterExecutionServer(g, s) })
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := New(conn, Options{Retry: &RetryPolicy{Retries: 5, FirstPause: time.Millisecond}}).
		Execute(ctx, &repb.ExecuteRequest{ActionDigest: &repb.Digest{Hash: "a", SizeBytes: 1}})
	if err == nil || ctx.Err() != nil {
		t.Fatalf("Execute: %v (context %v); want it to give up by itself", err, ctx.Err())
	}
	if s.calls != 6 {
		t.Errorf("%d streams opened, want the first and 5 resumes", s.calls)
	}
}
