package grpclimit

import (
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// pinger is a bare HTTP/2 client connection to a gRPC server: it sends
// PING frames when told to, as a client's keepalive does, and reports
// whether the server answered or sent GOAWAY.
type pinger struct {
	t  *testing.T
	fr *http2.Framer
}

func dialPinger(t *testing.T, addr string) *pinger {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	p := &pinger{t: t, fr: http2.NewFramer(c, c)}
	if err := p.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return p
}

// ping sends one PING and reads frames until its ack (true) or a GOAWAY
// (false, with the GOAWAY's debug data).
func (p *pinger) ping(n byte) (bool, string) {
	p.t.Helper()
	if err := p.fr.WritePing(false, [8]byte{n}); err != nil {
		return false, err.Error()
	}
	for {
		f, err := p.fr.ReadFrame()
		if err != nil {
			return false, err.Error()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				p.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if f.IsAck() && f.Data[0] == n {
				return true, ""
			}
		case *http2.GoAwayFrame:
			return false, string(f.DebugData())
		}
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
	p := dialPinger(t, pingServer(t))
	for i := range 5 {
		// The server acks a ping before it sends the GOAWAY the ping
		// earned, so the fifth ping, sent at once, is the one that finds
		// the connection ended or not (a single early ping is one strike
		// of the three the policy allows).
		if i > 0 && i < 4 {
			time.Sleep(MinPingInterval + time.Second)
		}
		if ok, why := p.ping(byte(i + 1)); !ok {
			t.Fatalf("ping %d: connection ended: %s", i+1, why)
		}
	}
}

// TestPingFloodIsRefused: a client pinging faster than MinPingInterval
// still gets GOAWAY "too_many_pings" after three strikes.
func TestPingFloodIsRefused(t *testing.T) {
	p := dialPinger(t, pingServer(t))
	for i := range 10 {
		ok, why := p.ping(byte(i + 1))
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
