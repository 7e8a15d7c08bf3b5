package worker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/storage"
)

// TestCacheStepWritesOnlyWhatIsStillAssigned: a result is written to the
// action cache while the scheduler assigns the action to this worker, and
// not once it no longer does (it may have given the action to another
// worker, whose result the client has); the result is returned either way.
func TestCacheStepWritesOnlyWhatIsStillAssigned(t *testing.T) {
	for _, assigned := range []bool{true, false} {
		ac := storage.NewMemoryActionCache()
		action := digest.FromBytes(repb.DigestFunction_SHA256, []byte("action"))
		want := &repb.ActionResult{StdoutRaw: []byte("out")}
		step := &cacheStep{
			next: ExecutorFunc(func(context.Context, *Job) (*repb.ExecuteResponse, error) {
				return &repb.ExecuteResponse{Result: want}, nil
			}),
			ac: ac, clock: clock.Real{}, logger: slog.New(slog.DiscardHandler),
			stillAssigned: func(context.Context) bool { return assigned },
		}
		j := &Job{Assignment: &workerpb.Assignment{InstanceName: "main"}, Metadata: &repb.ExecutedActionMetadata{},
			ActionDigest: action, Action: &repb.Action{}}
		resp, err := step.Execute(context.Background(), j)
		if err != nil || resp.Result != want {
			t.Fatalf("still assigned %v: %v, %v; want the result", assigned, resp, err)
		}
		_, err = ac.Get(context.Background(), "main", action)
		if cached := err == nil; cached != assigned {
			t.Fatalf("still assigned %v: cached %v (%v)", assigned, cached, err)
		}
		if !assigned && status.Code(err) != codes.NotFound {
			t.Fatalf("lookup: %v", err)
		}
	}
}

// TestCachedResultsCarryTheCompletionStamp: a result served from the
// action cache carries the same ExecutedActionMetadata as the client's
// copy, worker_completed_timestamp included. The stamp was set after the
// cache write, and every cache hit lacked it.
func TestCachedResultsCarryTheCompletionStamp(t *testing.T) {
	ac := storage.NewMemoryActionCache()
	action := digest.FromBytes(repb.DigestFunction_SHA256, []byte("action"))
	fake := clock.NewFake(time.Unix(1_700_000_000, 0))
	run := ExecutorFunc(func(context.Context, *Job) (*repb.ExecuteResponse, error) {
		fake.Advance(time.Second)
		return &repb.ExecuteResponse{Result: &repb.ActionResult{StdoutRaw: []byte("out")}}, nil
	})
	cache := &cacheStep{next: run, ac: ac, clock: fake, logger: slog.New(slog.DiscardHandler),
		stillAssigned: func(context.Context) bool { return true }}
	chain := &metadataStep{next: ExecutorFunc(func(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
		resp, err := cache.Execute(ctx, j)
		fake.Advance(time.Second) // whatever follows the cache write
		return resp, err
	}), clock: fake, logger: slog.New(slog.DiscardHandler)}
	j := &Job{Assignment: &workerpb.Assignment{InstanceName: "main"}, Metadata: &repb.ExecutedActionMetadata{},
		ActionDigest: action, Action: &repb.Action{}}
	resp, err := chain.Execute(context.Background(), j)
	if err != nil || resp.Result == nil {
		t.Fatalf("execute: %v, %v", resp, err)
	}
	cached, err := ac.Get(context.Background(), "main", action)
	if err != nil {
		t.Fatal(err)
	}
	if cached.ExecutionMetadata.GetWorkerCompletedTimestamp() == nil {
		t.Fatal("the cached result has no worker_completed_timestamp")
	}
	if !proto.Equal(cached.ExecutionMetadata, resp.Result.ExecutionMetadata) {
		t.Fatalf("the cached metadata %v differs from the client's %v", cached.ExecutionMetadata, resp.Result.ExecutionMetadata)
	}
}

// TestCancelledActionsAreNotWarnings: an action cancelled (its client
// left, a timeout) is logged at info, a worker's failure at warn: a soak
// whose clients hung up wrote 719 warnings in 35 minutes.
func TestCancelledActionsAreNotWarnings(t *testing.T) {
	for _, cancel := range []bool{true, false} {
		var log bytes.Buffer
		step := &metadataStep{next: ExecutorFunc(func(context.Context, *Job) (*repb.ExecuteResponse, error) {
			return nil, status.Error(codes.Unavailable, "runner gone")
		}), clock: clock.Real{}, logger: slog.New(slog.NewTextHandler(&log, nil))}
		ctx, stop := context.WithCancel(context.Background())
		if cancel {
			stop()
		}
		resp, _ := step.Execute(ctx, &Job{Assignment: &workerpb.Assignment{}, Metadata: &repb.ExecutedActionMetadata{}})
		stop()
		wantCode, wantLevel := codes.Unavailable, "level=WARN"
		if cancel {
			wantCode, wantLevel = codes.Canceled, "level=INFO"
		}
		if got := codes.Code(resp.GetStatus().GetCode()); got != wantCode || !strings.Contains(log.String(), wantLevel) {
			t.Errorf("cancelled %v: status %v, log %q; want %v at %s", cancel, got, log.String(), wantCode, wantLevel)
		}
	}
}
