package scheduler

import (
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
)

// This file holds an operator's drains: a drain holds for a worker id,
// across the loss of its sessions, until undrained.

// Drain stops giving work to a worker and returns how many actions it still
// runs. The drain holds for the worker's id until Undrain, also if the
// worker is lost and registers again. A worker not registered is
// NOT_FOUND, also one drained before it was lost: there is no worker to
// report on, and its drain already holds.
func (c *core) Drain(now time.Time, id string) (int, error) {
	w := c.workers[id]
	if w == nil {
		if c.drained[id] {
			return 0, status.Errorf(codes.NotFound, "worker %q is not registered with this scheduler: it was lost after it was drained, and stays drained if it registers again, until undrained", id)
		}
		return 0, status.Errorf(codes.NotFound, "worker %q is not known to this scheduler", id)
	}
	c.drained[id] = true
	if !w.draining {
		w.draining = true
		c.send(w.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Drain{Drain: &workerpb.Drain{}}})
	}
	return len(w.running), nil
}

// Undrain lets a drained worker take work again and returns how many
// actions it runs. A connected worker is told (Undrain) unless its session
// is leaving, which no undrain reverses. Undraining a worker that is not
// drained changes nothing. A drained worker that was lost is undrained
// too (it registers again undrained); any other id not registered is
// NOT_FOUND.
func (c *core) Undrain(now time.Time, id string) (int, error) {
	w := c.workers[id]
	if w == nil {
		if c.drained[id] {
			delete(c.drained, id)
			c.fx.undrained = append(c.fx.undrained, id)
			return 0, nil
		}
		return 0, status.Errorf(codes.NotFound, "worker %q is not known to this scheduler", id)
	}
	delete(c.drained, id)
	if w.draining {
		w.draining = false
		c.fx.undrained = append(c.fx.undrained, w.id)
		if w.connected && !w.leaving {
			c.send(w.id, &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Undrain{Undrain: &workerpb.Undrain{}}})
		}
		c.pumpWorker(now, w)
	}
	return len(w.running), nil
}
