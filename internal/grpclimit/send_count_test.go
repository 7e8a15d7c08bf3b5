package grpclimit

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/stats"
)

// writtenConn takes every write whole and keeps nothing.
type writtenConn struct{ addrConn }

func (writtenConn) Write(p []byte) (int, error) { return len(p), nil }

// TestPayloadWrittenBeforeItsStatIsCountedOnce: gRPC's writer may put a
// response on the socket before the call's OutPayload stat says it was
// handed over. The reservation's release and the payload's addition were
// two changes: the release alone fell below the bytes written and was
// raised to them, and the addition then counted the payload again, a
// backlog above zero with nothing queued (a cancelled download's
// connection kept it for good, and was closed as stalled).
func TestPayloadWrittenBeforeItsStatIsCountedOnce(t *testing.T) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	c := &sendConn{Conn: writtenConn{addrConn{local: addr, remote: addr}}, receiving: map[*sendRPC]time.Time{}}
	rpc := &sendRPC{conn: c}
	ctx := context.WithValue(context.Background(), sendRPCKey{}, rpc)
	const payload = 300 << 10
	if err := WaitToSend(ctx, payload+64); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write(make([]byte, payload)); err != nil {
		t.Fatal(err)
	}
	handleSend(ctx, &stats.OutPayload{WireLength: payload})
	if b := c.backlog(); b != 0 {
		t.Errorf("backlog %d bytes after the payload was written, want 0", b)
	}
	handleSend(ctx, &stats.End{})
	if b := c.backlog(); b != 0 {
		t.Errorf("backlog %d bytes after the call ended, want 0", b)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
}
