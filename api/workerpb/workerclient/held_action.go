package workerclient

import (
	"context"

	"github.com/paddock-build/paddock/api/workerpb"
)

// heldAction is an action the worker holds: running, or finished with a
// result not yet delivered. Guarded by Client.mu.
type heldAction struct {
	attempt int32
	cancel  context.CancelFunc
	result  *workerpb.Result
	// session is closed when the session the action belongs to ends: the
	// one that assigned it, or a later one that kept it at the reconnect
	// (keepLocked). stale says the scheduler no longer assigns it to this
	// worker (a Cancel, or a reconnect that did not keep it); it stays so.
	// Both decide StillAssigned.
	session <-chan struct{}
	stale   bool
}

// giveBackLocked returns every held action to the scheduler and forgets it;
// the handlers' eventual results are then dropped.
func (c *Client) giveBackLocked(reason string) {
	for name, h := range c.held {
		if h.result != nil {
			c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: h.result}})
		} else {
			c.sendLocked(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_GiveBack{GiveBack: &workerpb.GiveBack{
				OperationName: name, Attempt: h.attempt, Reason: reason}}})
		}
		if h.cancel != nil {
			h.cancel()
		}
		delete(c.held, name)
	}
}

// Holding reports whether the worker holds the named action.
func (c *Client) Holding(operationName string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held[operationName] != nil
}

// Held lists the actions the worker holds (running, or finished with the
// result not yet delivered).
func (c *Client) Held() []*workerpb.InHand {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*workerpb.InHand, 0, len(c.held))
	for name, h := range c.held {
		out = append(out, &workerpb.InHand{OperationName: name, Attempt: h.attempt})
	}
	return out
}
