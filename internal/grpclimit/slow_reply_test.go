package grpclimit

import (
	"context"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
)

// slowReply reserves room for its reply (WaitToSend), says so on
// reserved, and makes the reply only once release is closed, as a batch
// read waiting on a slow backend does.
type slowReply struct {
	*bytestream.UnimplementedByteStreamServer
	reserved, release chan struct{}
}

func (s slowReply) QueryWriteStatus(ctx context.Context, _ *bytestream.QueryWriteStatusRequest) (*bytestream.QueryWriteStatusResponse, error) {
	if err := WaitToSend(ctx, 1<<20); err != nil {
		return nil, err
	}
	close(s.reserved)
	<-s.release
	return &bytestream.QueryWriteStatusResponse{CommittedSize: 7}, nil
}

// TestSlowRepliesKeepTheirConnection: room reserved for a reply that is
// still being made is no backlog its client is late to read, however
// long the reply takes: the connection stays up. Counted as unread, a
// batch read waiting 30 s on a hung mirror side got its client's whole
// connection closed, every other call on it with it.
func TestSlowRepliesKeepTheirConnection(t *testing.T) {
	s := slowReply{&bytestream.UnimplementedByteStreamServer{}, make(chan struct{}), make(chan struct{})}
	addr := watchedServer(t, func(g *grpc.Server) { bytestream.RegisterByteStreamServer(g, s) })
	client, dials := dialCounting(t, addr)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	done := make(chan error, 1)
	var resp *bytestream.QueryWriteStatusResponse
	go func() {
		var err error
		resp, err = client.QueryWriteStatus(ctx, &bytestream.QueryWriteStatusRequest{ResourceName: "x"})
		done <- err
	}()
	<-s.reserved
	reapOnce(&ConnLimits{MaxConnBacklog: 16 << 20, MaxBacklog: 256 << 20, StallTimeout: time.Nanosecond, RequestTimeout: time.Hour})
	close(s.release)
	if err := <-done; err != nil || resp.CommittedSize != 7 || dials.Load() != 1 {
		t.Fatalf("a reply made slowly: %v, %v, after %d dials; want it over the first connection", resp, err, dials.Load())
	}
}
