package grpclimit

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/h2test"
)

// watchedServer serves register's services over a TrackSends listener
// with a RequestTimeout of 1 s, and returns its address.
func watchedServer(t *testing.T, register func(*grpc.Server), opts ...grpc.ServerOption) string {
	t.Helper()
	limits := DefaultConnLimits()
	limits.RequestTimeout = time.Second
	t.Cleanup(SetConnLimits(limits))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	grpctest.Start(t, TrackSends(lis), register, append(New(0).ServerOptions(), opts...)...)
	return lis.Addr().String()
}

// TestUnfinishedRequestsCloseTheirConnection: gRPC keeps what has arrived
// of a request message until the rest comes, so a client that sends all
// of a large request but its last bytes holds it in the server's memory.
// A connection with a unary request that has not arrived within
// RequestTimeout (1 s here) is closed; another connection, whose calls
// complete, stays up.
func TestUnfinishedRequestsCloseTheirConnection(t *testing.T) {
	addr := watchedServer(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) })
	var dials atomic.Int32
	good := healthpb.NewHealthClient(grpctest.Dial(t, addr, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	})))
	if _, err := good.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}

	// A Check whose message announces 100 bytes and sends 10.
	stalled := h2test.Dial(t, addr)
	stalled.Call(t, "/grpc.health.v1.Health/Check", h2test.Message(&healthpb.HealthCheckRequest{Service: "0123456789"}, 100)[:15], false)
	closed := stalled.Serve()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection with an unfinished request is still open after 10 s")
	}
	if _, err := good.Check(context.Background(), &healthpb.HealthCheckRequest{}); err != nil || dials.Load() != 1 {
		t.Fatalf("the other connection: %v, after %d dials; want it still up (1 dial)", err, dials.Load())
	}
}

// TestUnfinishedPublicRequestsHaveSeconds: a health Check needs no
// credentials and its request is a service name, so an unfinished one
// closes its connection after publicRequestTimeout, however long
// RequestTimeout is: anonymous connections of such Checks held 80 MiB
// each for its two minutes.
func TestUnfinishedPublicRequestsHaveSeconds(t *testing.T) {
	addr := watchedServer(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) })
	limits := DefaultConnLimits()
	limits.RequestTimeout = time.Hour
	t.Cleanup(SetConnLimits(limits))
	stalled := h2test.Dial(t, addr)
	stalled.Call(t, "/grpc.health.v1.Health/Check", h2test.Message(&healthpb.HealthCheckRequest{Service: "0123456789"}, 100)[:15], false)
	closed := stalled.Serve()
	select {
	case <-closed:
	case <-time.After(3 * publicRequestTimeout):
		t.Fatalf("the connection with an unfinished Check is still open after %s", 3*publicRequestTimeout)
	}
}

// TestPublicStreamsHaveSecondsToEndTheirSide: gRPC reads on past a health
// Watch's one request, to check no second one comes, and holds what comes
// of one (up to the server's 5 MiB); a Watch whose client sent its
// request, then part of another, kept it with no time bound. Its
// connection is closed after publicRequestTimeout too; a Watch whose
// client ends its side is served for as long as it lasts.
func TestPublicStreamsHaveSecondsToEndTheirSide(t *testing.T) {
	addr := watchedServer(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) })
	limits := DefaultConnLimits()
	limits.RequestTimeout = time.Hour
	t.Cleanup(SetConnLimits(limits))
	var dials atomic.Int32
	good := healthpb.NewHealthClient(grpctest.Dial(t, addr, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	})))
	watch, err := good.Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	stalled := h2test.Dial(t, addr)
	request := h2test.Message(&healthpb.HealthCheckRequest{}, 0)
	stalled.Call(t, "/grpc.health.v1.Health/Watch", append(request, h2test.Message(&healthpb.HealthCheckRequest{Service: "0123456789"}, 100)[:15]...), false)
	closed := stalled.Serve()
	select {
	case <-closed:
	case <-time.After(3 * publicRequestTimeout):
		t.Fatalf("the connection with a Watch's second request unfinished is still open after %s", 3*publicRequestTimeout)
	}
	if _, err := good.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || dials.Load() != 1 {
		t.Fatalf("the connection of a Watch whose client ended its side: %v, after %d dials; want it still up (1 dial)", err, dials.Load())
	}
}

func pingServer(t *testing.T) string {
	return grpctest.Listen(t, func(g *grpc.Server) { healthpb.RegisterHealthServer(g, health.NewServer()) }, New(0).ServerOptions()...)
}

// TestKeepalivePingsAreAccepted: a client pinging a little more than
// MinPingInterval apart on a connection without calls (Bazel with
// --grpc_keepalive_time between builds or actions) keeps its connection.
// grpc-go's default policy sent GOAWAY "too_many_pings" at the fourth.
// The pauses are the pings' spacing, which is what the test is about.
func TestKeepalivePingsAreAccepted(t *testing.T) {
	p := h2test.Dial(t, pingServer(t))
	for i := range 5 {
		// The server acks a ping before it sends the GOAWAY the ping
		// earned, so the fifth ping, sent at once, is the one that finds
		// the connection ended or not (a single early ping is one strike
		// of the three the policy allows).
		if i > 0 && i < 4 {
			time.Sleep(MinPingInterval + time.Second)
		}
		if ok, why := p.Ping(byte(i + 1)); !ok {
			t.Fatalf("ping %d: connection ended: %s", i+1, why)
		}
	}
}

// TestPingFloodIsRefused: a client pinging faster than MinPingInterval
// still gets GOAWAY "too_many_pings" after three strikes.
func TestPingFloodIsRefused(t *testing.T) {
	p := h2test.Dial(t, pingServer(t))
	for i := range 10 {
		ok, why := p.Ping(byte(i + 1))
		if !ok {
			if why != "too_many_pings" {
				t.Fatalf("ping %d: connection ended with %q, want GOAWAY too_many_pings", i+1, why)
			}
			if i < 3 {
				t.Fatalf("GOAWAY at ping %d, before three strikes", i+1)
			}
			return
		}
	}
	t.Fatal("10 pings in a row were all answered")
}

// uploads is a ByteStream server whose Write reads every message.
type uploads struct {
	*bytestream.UnimplementedByteStreamServer
}

func (uploads) Write(s bytestream.ByteStream_WriteServer) error {
	for {
		if _, err := s.Recv(); err != nil {
			return err
		}
	}
}

// quietService has one bidirectional stream that waits for its end, as a
// worker's session with the scheduler does while it has no work.
var quietService = grpc.ServiceDesc{
	ServiceName: "paddock.test.Quiet",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{StreamName: "Session", ServerStreams: true, ClientStreams: true,
		Handler: func(_ any, s grpc.ServerStream) error { <-s.Context().Done(); return nil }}},
}

// TestStoppedUploadsCloseTheirConnection: a ByteStream upload that stops
// in the middle of a message holds what has arrived of it, as a stopped
// unary request does, so the wait for its next message is timed the same
// way (1 s here) and its connection closed. A stream of another method
// that sends nothing for longer is not timed.
func TestStoppedUploadsCloseTheirConnection(t *testing.T) {
	addr := watchedServer(t, func(g *grpc.Server) {
		bytestream.RegisterByteStreamServer(g, uploads{&bytestream.UnimplementedByteStreamServer{}})
		g.RegisterService(&quietService, struct{}{})
	})
	quiet := h2test.Dial(t, addr)
	quietDone := quiet.Serve()
	quiet.Call(t, "/paddock.test.Quiet/Session", nil, false)
	// A first chunk that arrives whole, then a second that stops short.
	stopped := h2test.Dial(t, addr)
	chunk := &bytestream.WriteRequest{ResourceName: "uploads/x/blobs/y/1", Data: []byte("0123456789")}
	id := stopped.Call(t, "/google.bytestream.ByteStream/Write", h2test.Message(chunk, 0), false)
	stopped.Data(t, id, h2test.Message(chunk, 100)[:20], false)
	closed := stopped.Serve()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection with a stopped upload is still open after 10 s")
	}
	select {
	case <-quietDone:
		t.Fatal("the connection with a quiet stream of another method was closed")
	default:
	}
}

// busyUploads is a ByteStream server whose Write, after the first
// message, waits for release before it reads the rest: a Write waiting
// for room in a full CAS while it evicts, or for a remote CAS it
// forwards to.
type busyUploads struct {
	*bytestream.UnimplementedByteStreamServer
	first, release chan struct{}
}

func (u busyUploads) Write(s bytestream.ByteStream_WriteServer) error {
	var n int64
	for i := 0; ; i++ {
		req, err := s.Recv()
		if err != nil {
			return err
		}
		n += int64(len(req.Data))
		if i == 0 {
			close(u.first)
			<-u.release
		}
		if req.FinishWrite {
			return s.SendAndClose(&bytestream.WriteResponse{CommittedSize: n})
		}
	}
}

// dialCounting is a ByteStream client of addr, and the count of the
// connections it has dialled: a test that the server kept a connection
// up checks that the count is still one.
func dialCounting(t *testing.T, addr string) (bytestream.ByteStreamClient, *atomic.Int32) {
	dials := &atomic.Int32{}
	conn := grpctest.Dial(t, addr, grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
		dials.Add(1)
		return (&net.Dialer{}).DialContext(ctx, "tcp", a)
	}))
	return bytestream.NewByteStreamClient(conn), dials
}

// TestBusyUploadsKeepTheirConnection: the wait for an upload's next
// message is timed only while the server waits for it. A Write whose
// server is busy between messages (evicting to make room took minutes
// for 700,000 small blobs) did not read, so the client's next message
// could not arrive, and the connection was closed as stopped: the upload
// failed, with every other call of the client's connection. The reaper
// runs here with a RequestTimeout of a nanosecond while the server is
// busy.
func TestBusyUploadsKeepTheirConnection(t *testing.T) {
	u := busyUploads{&bytestream.UnimplementedByteStreamServer{}, make(chan struct{}), make(chan struct{})}
	addr := watchedServer(t, func(g *grpc.Server) { bytestream.RegisterByteStreamServer(g, u) })
	client, dials := dialCounting(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w, err := client.Write(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, data := range []string{"first", "second"} {
		if err := w.Send(&bytestream.WriteRequest{ResourceName: "uploads/x/blobs/y/11", WriteOffset: int64(5 * i), Data: []byte(data), FinishWrite: i == 1}); err != nil {
			t.Fatal(err)
		}
	}
	<-u.first
	reapOnce(&ConnLimits{MaxConnBacklog: 16 << 20, MaxBacklog: 256 << 20, StallTimeout: time.Hour, RequestTimeout: time.Nanosecond})
	close(u.release)
	resp, err := w.CloseAndRecv()
	if err != nil || resp.CommittedSize != 11 || dials.Load() != 1 {
		t.Fatalf("upload whose server was busy: %v, committed %d, after %d dials; want 11 bytes over the first connection", err, resp.GetCommittedSize(), dials.Load())
	}
}
