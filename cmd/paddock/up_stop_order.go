package main

import "context"

// stopOrder is the order in which `paddock up` stops on a signal: the
// worker first, then the rest of the farm (the endpoint with the
// scheduler, the runner child, the status page). A stopping worker gives
// its actions back (workerclient), and the scheduler requeues them
// without counting a retry. Stopped together, the scheduler closed the
// worker's session first, and each clean restart counted a retry against
// every action it interrupted: four restarts failed a long action.
type stopOrder struct {
	// farm is the context of the endpoint, runner and status page;
	// stopFarm ends it, and with it work (a failing endpoint stops the
	// worker too).
	farm     context.Context
	stopFarm context.CancelFunc
	// work is the worker's: ended by the signal (the parent context) or
	// by stopFarm.
	work     context.Context
	stopWork context.CancelFunc
	// unlinks stops the hooks between the contexts; early, the one that
	// stops the farm on a signal that comes before the worker runs.
	unlinks []func() bool
	early   func() bool
}

func newStopOrder(ctx context.Context) *stopOrder {
	o := &stopOrder{}
	o.farm, o.stopFarm = context.WithCancel(context.WithoutCancel(ctx))
	o.work, o.stopWork = context.WithCancel(ctx)
	o.early = context.AfterFunc(ctx, o.stopFarm)
	o.unlinks = []func() bool{context.AfterFunc(o.farm, o.stopWork), o.early}
	return o
}

// workerMayRun reports whether the worker may start: no signal has come.
// From then on a signal stops the worker alone, and the caller stops the
// farm once the worker has returned.
func (o *stopOrder) workerMayRun() bool { return o.early() }

// close ends both contexts.
func (o *stopOrder) close() {
	for _, unlink := range o.unlinks {
		unlink()
	}
	o.stopWork()
	o.stopFarm()
}
