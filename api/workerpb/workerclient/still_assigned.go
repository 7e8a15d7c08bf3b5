package workerclient

import (
	"context"

	"github.com/paddock-build/paddock/api/workerpb"
)

// assignmentKey keys, in a handler's context, the assignment the handler
// runs (StillAssigned).
type assignmentKey struct{}

// assignmentRef names a handler's action to its client.
type assignmentRef struct {
	c       *Client
	name    string
	attempt int32
}

// StillAssigned reports whether the scheduler still assigns the action of
// ctx (a Handler's context) to this worker, so that what the handler does
// outside the protocol on the strength of holding it, writing the action
// cache, is right to do. It is true while the session that assigned the
// action lives, or a later session that kept it at the reconnect
// (Registered.kept). It is false once the scheduler has said otherwise:
// it sent Cancel, or the worker reconnected and the scheduler did not keep
// the action (it gave it to another worker after this one's lease ran
// out, say, and the client has that run's result; a write here replaced
// that entry, and for an action whose outputs differ from run to run the
// client and later cache hits disagreed).
//
// Between sessions it waits for the next one's answer, or for ctx to end
// (false). A context from elsewhere names no assignment: true.
func StillAssigned(ctx context.Context) bool {
	ref, ok := ctx.Value(assignmentKey{}).(assignmentRef)
	if !ok {
		return true
	}
	return ref.c.stillAssigned(ctx, ref.name, ref.attempt)
}

func (c *Client) stillAssigned(ctx context.Context, name string, attempt int32) bool {
	for {
		c.mu.Lock()
		h := c.held[name]
		if h == nil || h.attempt != attempt || h.stale {
			c.mu.Unlock()
			return false
		}
		// Read under the lock that keepLocked replaces it under: a
		// session registering after this is seen below.
		session, next := h.session, c.reconciled
		c.mu.Unlock()
		select {
		case <-session:
		default:
			return true
		}
		select {
		case <-next:
		case <-ctx.Done():
			return false
		}
	}
}

// keepLocked applies a new session's Registered.kept to the actions held:
// those it names (same operation and attempt) now belong to the session
// whose end is ended, as if it had assigned them; every other one is
// stale for good. Waiting StillAssigned calls then decide.
func (c *Client) keepLocked(kept []*workerpb.InHand, ended <-chan struct{}) {
	keeps := map[string]int32{}
	for _, k := range kept {
		keeps[k.OperationName] = k.Attempt
	}
	for name, h := range c.held {
		if attempt, ok := keeps[name]; ok && attempt == h.attempt {
			h.session = ended
		} else {
			h.stale = true
		}
	}
	close(c.reconciled)
	c.reconciled = make(chan struct{})
}
