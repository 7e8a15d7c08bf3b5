package grpclimit

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/tap"
)

// Admission is a check of a new stream that the Limiter's tap runs once
// the stream is within the bound: it refuses the stream, or returns the
// context the call runs in. It sees the stream's headers and peer (TLS
// identity) but no message, so it can refuse a caller before the server
// has read anything for it, and it runs under the connection's lock, so
// it must be quick. auth.Interceptors.Admit is one: without it the
// server counted, and then held until its request timeout, every call a
// client without credentials opened, and such a client held the whole
// bound for as long as it liked.
//
// grpc-go takes one tap per server (a second InTapHandle panics), so an
// Admission is not a tap of its own: give it to the Limiter's
// ServerOptions with WithAdmission.
type Admission func(ctx context.Context, info *tap.Info) (context.Context, error)

// admissionOption carries an Admission among a server's options; as a
// grpc.ServerOption it changes nothing (grpc.EmptyServerOption).
type admissionOption struct {
	grpc.EmptyServerOption
	admit Admission
}

// WithAdmission returns a server option that does nothing by itself: a
// Limiter's ServerOptions given it runs a in its tap, after the bound.
// So the part of a role that builds the interceptors adds it to the
// options it hands on, and the part that adds the Limiter passes those
// options to ServerOptions.
func WithAdmission(a Admission) grpc.ServerOption {
	return admissionOption{admit: a}
}

// admissionsIn returns the Admissions of opts (WithAdmission), in order.
func admissionsIn(opts []grpc.ServerOption) []Admission {
	var out []Admission
	for _, o := range opts {
		if a, ok := o.(admissionOption); ok && a.admit != nil {
			out = append(out, a.admit)
		}
	}
	return out
}
