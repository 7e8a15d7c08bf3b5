package worker

import (
	"context"
	"fmt"
	"strings"
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
// answers CheckReadiness, a storage it can reach, and a connection to its
// scheduler on which it is registered. Operators see it through the gRPC
// health service. With Worker set, the worker also stops taking new work
// while it cannot run any (its runner or storage is down), and takes work
// again when it can: a worker whose runner was dead used to take every
// action it was offered and fail each after waiting 30 s for the runner,
// while healthy workers stood idle.
type Readiness struct {
	Runner    runnerpb.RunnerClient
	Scheduler WatchedConn
	// RunnerConn, if set, is watched too, so a runner that goes away is
	// noticed at once rather than at the next probe.
	RunnerConn WatchedConn
	// Storage, if set, is the worker's connection to storage: while it
	// fails to connect (TRANSIENT_FAILURE, until it is READY again) the
	// worker is not ready and takes no work, since every action would wait
	// for storage and then fail. An IDLE connection (unused for a while)
	// is asked to connect, to find out.
	Storage WatchedConn
	// Worker, if set, is the worker whose readiness this is. It is ready
	// only once registered with the scheduler (Worker.Registered): a
	// connection that is up may reach a server that is not a scheduler,
	// or one that refuses the worker. And it is paused, taking no new
	// work, while its runner or Storage is not ready.
	Worker *Worker
	// Interval between probes of the runner; default 1s.
	Interval time.Duration
}

// Run probes until ctx ends, and calls set with each change of readiness
// or of the reason for not being ready (and once at the start).
func (r Readiness) Run(ctx context.Context, set func(ready bool, why string)) {
	if r.Interval <= 0 {
		r.Interval = time.Second
	}
	changed := make(chan struct{}, 1)
	for _, c := range []WatchedConn{r.Scheduler, r.RunnerConn, r.Storage} {
		if c != nil {
			go watchState(ctx, c, changed)
		}
	}
	t := time.NewTicker(r.Interval)
	defer t.Stop()
	first, last, lastWhy := true, false, ""
	storageDown := false
	for {
		ready, why := r.probe(ctx, &storageDown)
		if ctx.Err() != nil {
			return
		}
		// A new reason is a change too: a worker whose runner came back
		// too old for it said, while paused, that the runner's socket
		// was missing (outside probe).
		if first || ready != last || reasonKind(why) != reasonKind(lastWhy) {
			set(ready, why)
			first, last, lastWhy = false, ready, why
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-changed:
		}
	}
}

// reasonKind is the part of a reason for not being ready that names its
// cause, its first two words ("runner not", "the runner", "storage
// unreachable", "scheduler connection", "not registered"): the rest (an
// error's text, a connection's state) may differ from one probe to the
// next for the same cause.
func reasonKind(why string) string {
	f := strings.Fields(why)
	return strings.Join(f[:min(len(f), 2)], " ")
}

// probe asks the runner, checks the storage and scheduler connections'
// states and the worker's registration, and pauses or resumes the worker.
// storageDown carries the storage connection's state from one probe to
// the next (storageFailing).
func (r Readiness) probe(ctx context.Context, storageDown *bool) (bool, string) {
	canRun, why := r.canRun(ctx, storageDown)
	if r.Worker != nil {
		r.Worker.setPaused(!canRun, why)
	}
	if st := r.Scheduler.GetState(); st != connectivity.Ready {
		return false, "scheduler connection " + st.String()
	}
	if r.Worker != nil && !r.Worker.Registered() {
		return false, "not registered with the scheduler (the worker logs why)"
	}
	return canRun, why
}

// canRun reports whether the worker could run an action now: its runner
// answers and its storage connection is not failing.
func (r Readiness) canRun(ctx context.Context, storageDown *bool) (bool, string) {
	pctx, cancel := context.WithTimeout(ctx, r.Interval)
	defer cancel()
	resp, err := r.Runner.CheckReadiness(pctx, &runnerpb.CheckReadinessRequest{})
	if err != nil {
		return false, "runner not ready: " + err.Error()
	}
	if !resp.TakesActionDir {
		return false, fmt.Sprintf("the runner (version %q) is older than this worker: it does not give action directories to the sandboxes, which could not reach their input roots; restart it from this worker's paddock binary", resp.Version)
	}
	if r.Storage != nil && storageFailing(r.Storage, storageDown) {
		return false, "storage unreachable: its connection is failing"
	}
	return true, ""
}

// storageFailing reports whether the storage connection c fails to
// connect. A connection between attempts (CONNECTING) keeps the last
// verdict, in *down, so that one that fails does not look ready at every
// attempt, nor one that reconnects after being idle look failed. An IDLE
// one is asked to connect.
func storageFailing(c WatchedConn, down *bool) bool {
	switch c.GetState() {
	case connectivity.TransientFailure:
		*down = true
	case connectivity.Ready:
		*down = false
	case connectivity.Idle:
		if cc, ok := c.(interface{ Connect() }); ok {
			cc.Connect()
		}
		*down = false
	}
	return *down
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
