package auth

import (
	"context"

	"google.golang.org/grpc/tap"
)

// admission is what Admit learned of a stream, carried in its context to
// the interceptors: the method's rule and the caller (nil for a public
// method). by is the Interceptors that admitted it: the interceptors
// trust only their own admission.
type admission struct {
	by *Interceptors
	r  rule
	pr *Principal
}

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
// the public share. The share is given back when the stream's context
// ends, which grpc-go does for every stream it admitted, handled or not
// (an unknown service's). The permission on the instance name, which is
// in the request, is still checked by the interceptors.
func (a *Interceptors) Admit(ctx context.Context, info *tap.Info) (context.Context, error) {
	if a == nil || a.policy == nil {
		return ctx, nil
	}
	r, pr, err := a.authenticate(ctx, info.FullMethodName)
	if err != nil {
		return nil, err
	}
	done, err := a.calls.take(partyOf(info.FullMethodName, r, pr))
	if err != nil {
		return nil, err
	}
	context.AfterFunc(ctx, done)
	return context.WithValue(ctx, admissionKey{}, &admission{by: a, r: r, pr: pr}), nil
}

// enter finds the rule of method and its caller for the interceptors, and
// counts the call in its party's share: nothing to do when this
// Interceptors admitted the stream (Admit), else as before there was a
// tap (a server built without it): authenticated now, and counted except
// for a unary public method (Health/Check, quick). done ends the count.
func (a *Interceptors) enter(ctx context.Context, method string, unary bool) (r rule, pr *Principal, done func(), err error) {
	if ad, ok := ctx.Value(admissionKey{}).(*admission); ok && ad.by == a {
		return ad.r, ad.pr, func() {}, nil
	}
	if r, pr, err = a.authenticate(ctx, method); err != nil {
		return r, nil, nil, err
	}
	if r.public && unary {
		return r, nil, func() {}, nil
	}
	if done, err = a.calls.take(partyOf(method, r, pr)); err != nil {
		return r, nil, nil, err
	}
	return r, pr, done, nil
}

// partyOf is the key a call counts under in tenantCalls: its caller's
// tenant ("": not counted), or for a public method the public share.
// Health Check has a share of its own: it is never refused by the
// server's bound, so that orchestrators do not restart a server that is
// only busy, and idle Watch streams holding the public share must not
// refuse it either; but a client can open Checks and never finish their
// requests, so they are bounded too.
func partyOf(method string, r rule, pr *Principal) string {
	switch {
	case method == healthCheck:
		return healthCheckParty
	case r.public:
		return publicParty
	}
	return pr.Tenant
}
