package worker

import (
	"context"
	"time"

	"google.golang.org/grpc/connectivity"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// WatchedConn is a gRPC client connection whose state can be watched
// (*grpc.ClientConn).
type WatchedConn interface {
	GetState() connectivity.State
	WaitForStateChange(ctx context.Context, s connectivity.State) bool
}

// Readiness follows what a worker needs to run actions: a runner that
// answers CheckReadiness, and a connection to its scheduler. Operators see
// it through the gRPC health service; a worker that is NOT_SERVING takes no
// new work that could succeed.
type Readiness struct {
	Runner    runnerpb.RunnerClient
	Scheduler WatchedConn
	// RunnerConn, if set, is watched too, so a runner that goes away is
	// noticed at once rather than at the next probe.
	RunnerConn WatchedConn
	// Interval between probes of the runner; default 1s.
	Interval time.Duration
}

// Run probes until ctx ends, and calls set with each change of readiness
// (and once at the start), with the reason when not ready.
func (r Readiness) Run(ctx context.Context, set func(ready bool, why string)) {
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	changed := make(chan struct{}, 1)
	for _, c := range []WatchedConn{r.Scheduler, r.RunnerConn} {
		if c != nil {
			go watchState(ctx, c, changed)
		}
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	first, last := true, false
	for {
		ready, why := r.probe(ctx)
		if ctx.Err() != nil {
			return
		}
		if first || ready != last {
			set(ready, why)
			first, last = false, ready
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

// probe checks the scheduler connection's state and asks the runner.
func (r Readiness) probe(ctx context.Context) (bool, string) {
	if st := r.Scheduler.GetState(); st != connectivity.Ready {
		return false, "scheduler connection " + st.String()
	}
	pctx, cancel := context.WithTimeout(ctx, r.Interval)
	defer cancel()
	if _, err := r.Runner.CheckReadiness(pctx, &runnerpb.CheckReadinessRequest{}); err != nil {
		return false, "runner not ready: " + err.Error()
	}
	return true, ""
}

// watchState signals changed at every state change of c until ctx ends.
func watchState(ctx context.Context, c WatchedConn, changed chan<- struct{}) {
	for {
		st := c.GetState()
		if !c.WaitForStateChange(ctx, st) {
			return
		}
		select {
		case changed <- struct{}{}:
		default:
		}
	}
}
