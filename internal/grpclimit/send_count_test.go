package grpclimit

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/proto"
)

// writtenConn takes every write whole and keeps nothing.
type writtenConn struct{ addrConn }

func (writtenConn) Write(p []byte) (int, error) { return len(p), nil }

// countedCall is a call on a tracked connection of its own, outside any
// server: its context, and the connection's count.
func countedCall(t *testing.T) (context.Context, *sendConn) {
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	c := &sendConn{Conn: writtenConn{addrConn{local: addr, remote: addr}}, receiving: map[*sendRPC]time.Time{}}
	t.Cleanup(func() { _ = c.Close() }) // takes what is left out of the process's count
	return context.WithValue(context.Background(), sendRPCKey{}, &sendRPC{conn: c}), c
}

// writeEarly hands gRPC a reply of n wire bytes the way its writer may
// take it: on the socket before the OutPayload stat says it was handed.
func writeEarly(t *testing.T, ctx context.Context, c *sendConn, n int) {
	if _, err := c.Write(make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	handleSend(ctx, &stats.OutPayload{WireLength: n})
}

// TestPayloadWrittenBeforeItsStatIsCountedOnce: gRPC's writer may put a
// response on the socket before the call's OutPayload stat says it was
// handed over. The reservation's release and the payload's addition were
// two changes: the release alone fell below the bytes written and was
// raised to them, and the addition then counted the payload again, a
// backlog above zero with nothing queued (a cancelled download's
// connection kept it for good, and was closed as stalled).
func TestPayloadWrittenBeforeItsStatIsCountedOnce(t *testing.T) {
	ctx, c := countedCall(t)
	const payload = 300 << 10
	if err := WaitToSend(ctx, payload+64); err != nil {
		t.Fatal(err)
	}
	writeEarly(t, ctx, c, payload)
	if b := c.backlog(); b != 0 {
		t.Errorf("backlog %d bytes after the payload was written, want 0", b)
	}
	handleSend(ctx, &stats.End{})
	if b := c.backlog(); b != 0 {
		t.Errorf("backlog %d bytes after the call ended, want 0", b)
	}
}

// earlyStream is a server stream whose replies are written before their
// stat, as in writeEarly.
type earlyStream struct {
	grpc.ServerStream
	t   *testing.T
	ctx context.Context
	c   *sendConn
}

func (s earlyStream) Context() context.Context { return s.ctx }

func (s earlyStream) SendMsg(m any) error {
	writeEarly(s.t, s.ctx, s.c, proto.Size(m.(proto.Message))+grpcMessageHeader)
	return nil
}

// TestUnreservedRepliesWrittenEarlyLeaveNoBacklog: a reply its handler
// did not reserve (a FindMissingBlobs answer, a stream's operation), once
// written before its stat, was counted as unread with nothing queued; the
// idle connection was then closed as stalled after StallTimeout, its
// other calls with it. Each reply, unary or streamed, is reserved before
// gRPC takes it.
func TestUnreservedRepliesWrittenEarlyLeaveNoBacklog(t *testing.T) {
	reply := &bytestream.ReadResponse{Data: make([]byte, 200<<10)}
	t.Run("stream", func(t *testing.T) {
		ctx, c := countedCall(t)
		err := receivingStreams(nil, earlyStream{t: t, ctx: ctx, c: c}, nil, func(_ any, ss grpc.ServerStream) error {
			return ss.SendMsg(reply)
		})
		if err != nil {
			t.Fatal(err)
		}
		if b := c.backlog(); b != 0 {
			t.Errorf("backlog %d bytes after a streamed reply was written, want 0", b)
		}
	})
	t.Run("unary", func(t *testing.T) {
		ctx, c := countedCall(t)
		resp, err := reservingReplies(ctx, nil, nil, func(context.Context, any) (any, error) { return reply, nil })
		if err != nil {
			t.Fatal(err)
		}
		writeEarly(t, ctx, c, proto.Size(resp.(proto.Message))+grpcMessageHeader)
		if b := c.backlog(); b != 0 {
			t.Errorf("backlog %d bytes after a unary reply was written, want 0", b)
		}
	})
}
