package workerclient

import "context"

// sessionKey keys, in a handler's context, the channel closed when the
// session that assigned the action ended (SessionEnded).
type sessionKey struct{}

// SessionEnded reports whether the scheduler session that assigned the
// action of ctx (a Handler's context) has ended: the stream broke, or the
// scheduler ended it, as it does when the worker's lease ran out and the
// action went to another worker. The action's result still goes to the
// scheduler, which takes it only if the action is still this worker's;
// what the handler does outside the protocol on the strength of holding
// the action, writing the action cache, it should then leave undone. A
// context from elsewhere has no session: false.
func SessionEnded(ctx context.Context) bool {
	ended, ok := ctx.Value(sessionKey{}).(<-chan struct{})
	if !ok {
		return false
	}
	select {
	case <-ended:
		return true
	default:
		return false
	}
}
