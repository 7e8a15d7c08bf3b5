package main

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/paddock-build/paddock/api/workerpb/workerclient"
)

// pingCounter is a listener whose connections count the HTTP/2 PING
// frames (not their acknowledgements) the server writes.
type pingCounter struct {
	net.Listener
	mu    sync.Mutex
	pings int
}

func (l *pingCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pingCountingConn{Conn: c, l: l}, nil
}

func (l *pingCounter) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pings
}

// pingCountingConn reads the frames in what the server writes: a 9-byte
// header (24-bit length, type, flags, stream) and the payload.
type pingCountingConn struct {
	net.Conn
	l   *pingCounter
	buf []byte
}

func (c *pingCountingConn) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 9 {
		n := int(c.buf[0])<<16 | int(c.buf[1])<<8 | int(c.buf[2])
		if len(c.buf) < 9+n {
			break
		}
		if typ, flags := c.buf[3], c.buf[4]; typ == 0x6 && flags&0x1 == 0 { // PING, not an ACK
			c.l.mu.Lock()
			c.l.pings++
			c.l.mu.Unlock()
		}
		c.buf = c.buf[9+n:]
	}
	return c.Conn.Write(p)
}

// TestWorkerProtocolServerSendsNoPingPerMessage: the scheduler's servers
// of the worker protocol (up's local socket, the scheduler role's
// --worker-listen) have fixed flow-control windows, so a message from a
// worker is not answered with a bandwidth-delay ping besides the reply:
// none over 50 calls. gRPC's default, measured here too so that the count
// is seen to work, sends one for nearly every call.
func TestWorkerProtocolServerSendsNoPingPerMessage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		server   func() *grpc.Server
		wantNone bool
	}{
		{"worker protocol server", func() *grpc.Server { return newInternalServer() }, true},
		{"gRPC's default", func() *grpc.Server { return grpc.NewServer() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			counted := &pingCounter{Listener: lis}
			g := tc.server()
			healthpb.RegisterHealthServer(g, health.NewServer())
			go func() { _ = g.Serve(counted) }() // ends with Stop
			t.Cleanup(g.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), append(workerclient.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := healthpb.NewHealthClient(conn)
			for range 50 {
				if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close() // the server has written all it answers with
			if got := counted.count(); tc.wantNone && got != 0 {
				t.Errorf("the server sent %d pings over 50 calls; want none", got)
			} else if !tc.wantNone && got == 0 {
				t.Errorf("gRPC's default sent no ping over 50 calls: the count sees none")
			}
		})
	}
}
