package grpclimit

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestUnfinishedRequestsCloseTheirConnection: gRPC keeps what has arrived
// of a request message until the rest comes, so a client that sends all
// of a large request but its last bytes holds it in the server's memory.
// A connection with a unary request that has not arrived within
// RequestTimeout is closed; another connection, whose calls complete,
// stays up.
func TestUnfinishedRequestsCloseTheirConnection(t *testing.T) {
	limits := DefaultConnLimits()
	limits.RequestTimeout = 300 * time.Millisecond
	t.Cleanup(SetConnLimits(limits))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpctest.Start(t, TrackSends(lis), func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) }, New(0).ServerOptions()...)
	addr := lis.Addr().String()
	var dials atomic.Int32
	good := healthpb.NewHealthClient(grpctest.Dial(t, addr, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	})))
	if _, err := good.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	// A Check whose message announces 100 bytes and sends 10.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", addr},
		{":path", "/grpc.health.v1.Health/Check"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	msg := make([]byte, 5+10)
	binary.BigEndian.PutUint32(msg[1:5], 100)
	fr.WriteData(1, false, msg)
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return
			}
			if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
				fr.WriteSettingsAck()
			}
		}
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection with an unfinished request is still open after 10 s")
	}
	if _, err := good.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || dials.Load() != 1 {
		t.Fatalf("the other connection: %v, after %d dials; want it still up (1 dial)", err, dials.Load())
	}
}
