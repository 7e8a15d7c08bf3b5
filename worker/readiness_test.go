package worker

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// switchRunner answers CheckReadiness while up is set, as a runner older
// than the worker while old is set.
type switchRunner struct {
	runnerpb.RunnerClient
	up, old atomic.Bool
}

func (r *switchRunner) CheckReadiness(ctx context.Context, in *runnerpb.CheckReadinessRequest, _ ...grpc.CallOption) (*runnerpb.CheckReadinessResponse, error) {
	if !r.up.Load() {
		return nil, errors.New("connection refused")
	}
	return &runnerpb.CheckReadinessResponse{Version: "v", TakesActionDir: !r.old.Load()}, nil
}

// stateConn is a connection whose state the test sets.
type stateConn struct {
	state   atomic.Int32
	changed chan struct{}
}

func (c *stateConn) GetState() connectivity.State { return connectivity.State(c.state.Load()) }

func (c *stateConn) WaitForStateChange(ctx context.Context, s connectivity.State) bool {
	select {
	case <-c.changed:
		return true
	case <-ctx.Done():
		return false
	}
}

func (c *stateConn) set(s connectivity.State) {
	c.state.Store(int32(s))
	c.changed <- struct{}{}
}

// TestReadiness: ready only while the runner answers (and is not older
// than the worker) and the scheduler connection is READY; every change is
// reported once.
func TestReadiness(t *testing.T) {
	r := &switchRunner{}
	r.up.Store(true)
	sched := &stateConn{changed: make(chan struct{})}
	sched.state.Store(int32(connectivity.Ready))
	changes := make(chan bool, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var lastWhy atomic.Value
	go Readiness{Runner: r, Scheduler: sched, Interval: 10 * time.Millisecond}.Run(ctx, func(ready bool, why string) {
		lastWhy.Store(why)
		changes <- ready
	})
	next := func(want bool) {
		t.Helper()
		select {
		case got := <-changes:
			if got != want {
				t.Fatalf("readiness %v, want %v", got, want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no readiness change to %v", want)
		}
	}
	next(true)
	r.up.Store(false)
	next(false)
	r.up.Store(true)
	next(true)
	sched.set(connectivity.TransientFailure)
	next(false)
	sched.set(connectivity.Ready)
	next(true)
	// A runner older than the worker (restarted from an old binary) would
	// fail every action: not ready, saying why.
	r.old.Store(true)
	next(false)
	if why, _ := lastWhy.Load().(string); !strings.Contains(why, "older than this worker") {
		t.Errorf("not ready because %q; want the runner named older than the worker", why)
	}
	r.old.Store(false)
	next(true)
	// While not ready, a new reason is a change too: a worker whose
	// runner came back too old went on saying its socket was missing.
	r.up.Store(false)
	next(false)
	r.old.Store(true)
	r.up.Store(true)
	next(false)
	if why, _ := lastWhy.Load().(string); !strings.Contains(why, "older than this worker") {
		t.Errorf("not ready because %q after the runner came back old; want the runner named older than the worker", why)
	}
	r.old.Store(false)
	next(true)
	select {
	case got := <-changes:
		t.Errorf("a change to %v without a cause", got)
	default:
	}
}
