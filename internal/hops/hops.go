// Package hops stops calls that Paddock's own servers forward to each
// other from going round in a loop. A scheduler forwards storage calls to
// its --storage, a storage to its remote backend, and either can be
// pointed, by mistake, at itself or at a server that forwards back (a
// Kubernetes Service in front of the scheduler, say): each call then made
// another without end, and a scheduler pointed at its own port grew to
// 2 GB in 30 s while its client hung. Every forwarded call carries how
// many Paddock servers it has passed (Header), and past Max the next one
// is refused with FAILED_PRECONDITION naming the loop.
package hops

import (
	"context"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Header is the gRPC metadata key that counts the Paddock servers a call
// has passed through.
const Header = "paddock-hops"

// Max is the most servers a call may pass: a client's call through a
// scheduler, a storage and a remote backend is three.
const Max = 8

// Conn wraps conn so that each call made on it counts one more hop than
// the call its context came in with, and is refused past Max.
func Conn(conn grpc.ClientConnInterface) grpc.ClientConnInterface { return hopConn{conn} }

type hopConn struct{ grpc.ClientConnInterface }

func (c hopConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	ctx, err := next(ctx, method)
	if err != nil {
		return err
	}
	return c.ClientConnInterface.Invoke(ctx, method, args, reply, opts...)
}

func (c hopConn) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	ctx, err := next(ctx, method)
	if err != nil {
		return nil, err
	}
	return c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
}

// next returns ctx with the outgoing hop count one past the incoming one.
func next(ctx context.Context, method string) (context.Context, error) {
	n := Of(ctx) + 1
	if n > Max {
		return nil, status.Errorf(codes.FailedPrecondition, "%s: this call has been forwarded through %d Paddock servers: a forwarding loop (a scheduler's --storage, or a storage's remote endpoint, pointing back at itself?)", method, Max)
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	md = md.Copy()
	md.Set(Header, strconv.Itoa(n))
	return metadata.NewOutgoingContext(ctx, md), nil
}

// Of is the hop count of ctx's incoming call: 0 for a call from a client.
func Of(ctx context.Context) int {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get(Header)
	if len(v) == 0 {
		return 0
	}
	n, err := strconv.Atoi(v[0])
	if err != nil || n < 0 {
		return 0
	}
	return n
}
