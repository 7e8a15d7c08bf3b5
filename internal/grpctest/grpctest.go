// Package grpctest serves gRPC services for tests the way the roles serve
// them: a real grpc.Server on a real listener (a loopback port or a UNIX
// socket) and a real client connection, each stopped or closed when the
// test ends, so tests exercise the wire and not an in-memory shortcut.
package grpctest

import (
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Start serves on lis a gRPC server built with opts, whose services
// register adds, until the test ends; it returns the server for a test
// that stops it sooner (Stop is safe to call twice).
func Start(t testing.TB, lis net.Listener, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.Server {
	t.Helper()
	g := grpc.NewServer(opts...)
	register(g)
	go func() { _ = g.Serve(lis) }() // returns when g is stopped
	t.Cleanup(g.Stop)
	return g
}

// Listen is Start on a fresh port of 127.0.0.1; it returns the address.
func Listen(t testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	Start(t, lis, register, opts...)
	return lis.Addr().String()
}

// ListenUnix is Start on the UNIX socket sock.
func ListenUnix(t testing.TB, sock string, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.Server {
	t.Helper()
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	return Start(t, lis, register, opts...)
}

// Dial is a client connection without transport security to target (an
// address, or a "unix://" or "passthrough:///" one), with opts besides,
// closed when the test ends.
func Dial(t testing.TB, target string, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Serve is Listen, and a client connection to it.
func Serve(t testing.TB, register func(*grpc.Server), opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	return Dial(t, Listen(t, register, opts...))
}
