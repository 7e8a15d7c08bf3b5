package auth

import (
	"context"
	"log/slog"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Interceptors put the policy in front of every call of a gRPC server:
// they authenticate the caller, check the method's permission on the
// request's instance name, log the decision at debug level, and hand the
// principal to the handler in the context (FromContext).
type Interceptors struct {
	policy *Policy
	log    *slog.Logger
	calls  *tenantCalls // nil: no share (LimitTenantCalls)
}

// NewInterceptors returns the interceptors of policy; with a nil policy
// they are not installed at all and every call is allowed.
func NewInterceptors(policy *Policy, log *slog.Logger) *Interceptors {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Interceptors{policy: policy, log: log}
}

// ServerOptions installs the interceptors; none without a policy.
func (a *Interceptors) ServerOptions() []grpc.ServerOption {
	if a == nil || a.policy == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.ChainUnaryInterceptor(a.unary), grpc.ChainStreamInterceptor(a.stream)}
}

func (a *Interceptors) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	r, pr, done, err := a.enter(ctx, info.FullMethod, true)
	if err != nil {
		return nil, err
	}
	defer done()
	if r.public {
		return handler(ctx, req)
	}
	if err := a.authorize(ctx, info.FullMethod, r, pr, req); err != nil {
		return nil, err
	}
	return handler(NewContext(ctx, pr), req)
}

func (a *Interceptors) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	r, pr, done, err := a.enter(ss.Context(), info.FullMethod, false)
	if err != nil {
		return err
	}
	defer done()
	if r.public {
		return handler(srv, ss)
	}
	ws := &authorizedStream{ServerStream: ss, ctx: NewContext(ss.Context(), pr)}
	if r.instance == nil {
		if err := a.authorize(ss.Context(), info.FullMethod, r, pr, nil); err != nil {
			return err
		}
	} else {
		// The instance name is in the first request message.
		ws.check = func(m any) error { return a.authorize(ss.Context(), info.FullMethod, r, pr, m) }
	}
	return handler(srv, ws)
}

// authenticate finds the method's rule and, unless it is public, the
// caller; a refusal is counted (Refusals).
func (a *Interceptors) authenticate(ctx context.Context, method string) (rule, *Principal, error) {
	r, pr, err := a.authenticateUncounted(ctx, method)
	countRefusal(err)
	return r, pr, err
}

func (a *Interceptors) authenticateUncounted(ctx context.Context, method string) (rule, *Principal, error) {
	r, ok := ruleFor(method)
	if !ok {
		a.log.Debug("auth: denied", "method", method, "reason", "method not in the rules")
		return r, nil, status.Errorf(codes.PermissionDenied, "method %s is not served to clients", method)
	}
	if r.public {
		return r, nil, nil
	}
	pr, err := a.policy.Authenticate(ctx)
	if err != nil {
		a.log.Debug("auth: unauthenticated", "method", method, "error", err)
		return r, nil, err
	}
	return r, pr, nil
}

// authorize checks r for pr, with the instance name taken from req.
func (a *Interceptors) authorize(ctx context.Context, method string, r rule, pr *Principal, req any) error {
	err := a.authorizeUncounted(ctx, method, r, pr, req)
	countRefusal(err)
	return err
}

func (a *Interceptors) authorizeUncounted(ctx context.Context, method string, r rule, pr *Principal, req any) error {
	instance := ""
	if r.instance != nil && req != nil {
		var err error
		if instance, err = r.instance(req); err != nil {
			a.log.Debug("auth: denied", "method", method, "principal", pr.Name, "reason", "bad instance name")
			return err
		}
	}
	err := check(r, pr, instance, r.instance != nil)
	if a.log.Enabled(ctx, slog.LevelDebug) {
		// The instance name is checked for its length later, by the
		// service: a 3 MiB name made a 3 MB line a call.
		if len(instance) > maxLoggedInstance {
			instance = instance[:maxLoggedInstance] + "…"
		}
		if err != nil {
			a.log.Debug("auth: denied", "method", method, "principal", pr.Name, "instance", instance, "reason", status.Convert(err).Message())
		} else {
			a.log.Debug("auth: allowed", "method", method, "principal", pr.Name, "instance", instance)
		}
	}
	return err
}

// maxLoggedInstance bounds the instance name a debug line shows.
const maxLoggedInstance = 256

// check is the decision itself, pure: PERMISSION_DENIED naming what is
// missing, or nil.
func check(r rule, pr *Principal, instance string, hasInstance bool) error {
	switch {
	case r.worker:
		// A scheduler never registers as a worker: its key should not
		// be given every tenant's actions.
		if !pr.Worker || pr.Scheduler {
			return status.Error(codes.PermissionDenied, "only worker identities may use the worker protocol")
		}
		return nil
	case r.tenantsOnly && pr.Worker:
		return status.Error(codes.PermissionDenied, "worker identities may not call this method: only a tenant's identity with the permission may")
	case r.perm == "":
		if hasInstance && !pr.Owns(instance) {
			return status.Errorf(codes.PermissionDenied, "instance name %q is not one of yours", instance)
		}
		return nil
	case !hasInstance || r.perm == Admin:
		if !pr.Holds(r.perm) {
			return status.Errorf(codes.PermissionDenied, "permission %s is not granted to you", r.perm)
		}
		return nil
	}
	if !pr.Allowed(r.perm, instance) {
		return status.Errorf(codes.PermissionDenied, "permission %s on instance name %q is not granted to you", r.perm, instance)
	}
	return nil
}

// authorizedStream checks the first message it receives (check), and
// carries the principal in its context.
type authorizedStream struct {
	grpc.ServerStream
	ctx   context.Context
	check func(m any) error
	once  sync.Once
	err   error
}

func (s *authorizedStream) Context() context.Context { return s.ctx }

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.check == nil {
		return nil
	}
	s.once.Do(func() { s.err = s.check(m) })
	return s.err
}
