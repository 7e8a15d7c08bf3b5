package auth

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// admission is what Admit learned of a stream, carried in its context to
// the interceptors: the method's rule and the caller (nil for a public
// method). by is the Interceptors that admitted it: the interceptors
// trust only their own admission.
//
// It also holds the stream's count in its party's share (release), given
// back exactly once: when the handler returns if the interceptors
// started one (start), else when the stream's context ends
// (releaseUnstarted), for a stream grpc-go never hands to a handler (an
// unknown service's, or one reset before its request came). state is
// admissionPending until one of those two wins a compare-and-swap;
// releaseUnstarted runs in a goroutine of its own (context.AfterFunc),
// start and the done it returns in the handler's.
type admission struct {
	by      *Interceptors
	r       rule
	pr      *Principal
	state   atomic.Int32
	release func()
}

// The states of an admission's count, in the only order it moves
// through them: pending to running to released, or pending to released.
const (
	admissionPending int32 = iota
	admissionRunning
	admissionReleased
)

type admissionKey struct{}

// Admit authenticates a new stream from its headers and peer alone, and
// counts it in its tenant's share of calls (LimitTenantCalls), before the
// server reads a message for it: install it in the server's one tap
// (grpclimit.WithAdmission). Without it a unary call was authenticated
// only once its whole request had arrived, so a client without
// credentials held a call of the server's bound with each call whose
// request it never finished, and a tenant that did so was past its share
// unnoticed: the server refused every tenant's calls as long as such a
// client kept it up. With it, a method not in the rules is
// PERMISSION_DENIED, a caller without good credentials UNAUTHENTICATED,
// and a tenant at its share RESOURCE_EXHAUSTED, none of them counted in
// the server's bound. Public methods need no credentials; they count in
// the public share, and Health Checks in their connection's. The share
// is given back when the handler returns, or, if no handler started,
// when the stream's context ends (grpc-go ends it for every stream it
// admitted, handled or not): see admission. Not when the context ends: a
// handler goes on after its client cancels until it returns (decoding a
// batch of blobs may take seconds), and a tenant that cancelled its calls
// at once ran more handlers than its share. The permission on the
// instance name, which is in the request, is still checked by the
// interceptors.
func (a *Interceptors) Admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	if a == nil || a.policy == nil {
		return ctx, nil
	}
	r, pr, err := a.authenticate(ctx, info.FullMethodName)
	if err != nil {
		return nil, err
	}
	done, err := a.calls.take(partyOf(ctx, info.FullMethodName, r, pr))
	if err != nil {
		return nil, err
	}
	ad := &admission{by: a, r: r, pr: pr, release: done}
	context.AfterFunc(ctx, ad.releaseUnstarted)
	return context.WithValue(ctx, admissionKey{}, ad), nil
}

// releaseUnstarted gives the count back if no handler has started.
func (ad *admission) releaseUnstarted() {
	if ad.state.CompareAndSwap(admissionPending, admissionReleased) {
		ad.release()
	}
}

// start marks the stream's handler as started, so that its count lasts
// until done, which the handler calls when it returns. false when the
// count was already given back (the stream's context ended first).
func (ad *admission) start() (done func(), ok bool) {
	if !ad.state.CompareAndSwap(admissionPending, admissionRunning) {
		return nil, false
	}
	return func() {
		if ad.state.CompareAndSwap(admissionRunning, admissionReleased) {
			ad.release()
		}
	}, true
}

// enter finds the rule of method and its caller for the interceptors, and
// counts the call in its party's share until done, which the caller calls
// when its handler returns. When this Interceptors admitted the stream
// (Admit), it was counted then, and enter keeps that count for the
// handler; else, as before there was a tap (a server built without it),
// the call is authenticated now, and counted except for a unary public
// method (Health/Check, quick).
//
// A stream whose context ended before enter was given its count back
// then, and is refused with its context's error rather than run
// uncounted: a client that resets each call right after sending its
// request would otherwise run any number of handlers, which no longer
// answer it anyway.
func (a *Interceptors) enter(ctx context.Context, method string, unary bool) (r rule, pr *Principal, done func(), err error) {
	if ad, ok := ctx.Value(admissionKey{}).(*admission); ok && ad.by == a {
		if done, ok = ad.start(); !ok {
			return ad.r, nil, nil, endedError(ctx)
		}
		return ad.r, ad.pr, done, nil
	}
	if r, pr, err = a.authenticate(ctx, method); err != nil {
		return r, nil, nil, err
	}
	if r.public && unary {
		return r, nil, func() {}, nil
	}
	if done, err = a.calls.take(partyOf(ctx, method, r, pr)); err != nil {
		return r, nil, nil, err
	}
	return r, pr, done, nil
}

// endedError is the status of a stream whose context has ended. A
// context derived from the stream's may learn of it a moment after
// releaseUnstarted ran (the parent tells its children one by one), so a
// nil Err is taken as a cancellation.
func endedError(ctx context.Context) error {
	err := ctx.Err()
	if err == nil {
		err = context.Canceled
	}
	return status.FromContextError(err).Err()
}

// partyOf is the party a call counts under in tenantCalls: its caller's
// tenant ("": not counted), or for a public method the public share.
// Health Checks count per connection: they are never refused by the
// server's bound, so that orchestrators do not restart a server that is
// only busy, and idle Watch streams holding the public share must not
// refuse them either; but a client can open Checks and never finish
// their requests, so each connection's are bounded
// (maxChecksPerConnection), and one connection's do not refuse
// another's.
func partyOf(ctx context.Context, method string, r rule, pr *Principal) party {
	switch {
	case method == healthCheck:
		return party{name: healthCheckParty, conn: connectionOf(ctx)}
	case r.public:
		return party{name: publicParty}
	}
	return party{name: pr.Tenant}
}
