package grpclimit

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// chattyServer has two server-streaming methods: Big sends one message of
// bigBytes, Small one of smallBytes; each then reports what streamUnsent
// reads (unsent) and waits for its end.
type chattyServer struct {
	unsent     chan int64
	unsentOK   atomic.Bool
	smallEnded atomic.Int64 // stats.End of Small calls
}

const bigBytes, smallBytes = 4 << 20, 2000

func (c *chattyServer) desc() *grpc.ServiceDesc {
	send := func(n int, report bool) func(any, grpc.ServerStream) error {
		return func(_ any, s grpc.ServerStream) error {
			if err := s.SendMsg(wrapperspb.Bytes(make([]byte, n))); err != nil {
				return err
			}
			if report {
				u, ok := streamUnsent(s.Context())
				c.unsentOK.Store(ok)
				c.unsent <- u
			}
			<-s.Context().Done()
			return s.Context().Err()
		}
	}
	return &grpc.ServiceDesc{ServiceName: "paddock.test.Chatty", HandlerType: (*any)(nil), Streams: []grpc.StreamDesc{
		{StreamName: "Big", ServerStreams: true, Handler: send(bigBytes, true)},
		{StreamName: "Small", ServerStreams: true, Handler: send(smallBytes, false)},
	}}
}

// TagRPC, HandleRPC, TagConn and HandleConn count the Small calls' ends.
func (c *chattyServer) TagRPC(ctx context.Context, i *stats.RPCTagInfo) context.Context {
	if i.FullMethodName == "/paddock.test.Chatty/Small" {
		return context.WithValue(ctx, chattyServer{}, true)
	}
	return ctx
}
func (c *chattyServer) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, end := s.(*stats.End); end && ctx.Value(chattyServer{}) != nil {
		c.smallEnded.Add(1)
	}
}
func (c *chattyServer) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }
func (c *chattyServer) HandleConn(context.Context, stats.ConnStats)                       {}

// TestStreamUnsentReadsGRPCsWriteQuota: the reflection into grpc-go finds
// the stream's write quota, and a message the client cannot take (its
// window is 64 KiB) counts as unsent, nearly all of it. If grpc-go's
// layout changes, this fails: cancelled calls then count nothing as
// dropped.
//
// And cancelled calls whose bytes were written take nothing from the
// count of another stream's unread response on the same connection: 300
// of them, counted at the most each could hold, erased 600 KB of it, and
// a client looping so held 235 MB past the 16 MiB bound.
func TestStreamUnsentReadsGRPCsWriteQuota(t *testing.T) {
	c := &chattyServer{unsent: make(chan int64, 1)}
	addr := watchedServer(t, func(g *grpc.Server) { g.RegisterService(c.desc(), struct{}{}) }, grpc.StatsHandler(c))
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if _, err := conn.NewStream(ctx, &c.desc().Streams[0], "/paddock.test.Chatty/Big"); err != nil {
		t.Fatal(err)
	}
	if u := <-c.unsent; !c.unsentOK.Load() || u < bigBytes-(256<<10) || u > bigBytes+64 {
		t.Fatalf("streamUnsent = %d (found %v), want about %d: the message the client cannot take", u, c.unsentOK.Load(), bigBytes)
	}
	// The client's window takes 64 KiB of the message; then the count
	// holds the rest.
	for deadline := time.Now().Add(10 * time.Second); SendBacklog() > bigBytes-(60<<10); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("send backlog %d: the client's window was not written", SendBacklog())
		}
	}
	before := SendBacklog()
	const n = 300
	for range n {
		sctx, scancel := context.WithCancel(ctx)
		s, err := conn.NewStream(sctx, &c.desc().Streams[1], "/paddock.test.Chatty/Small")
		if err == nil {
			err = s.SendMsg(&wrapperspb.BytesValue{})
		}
		if err == nil {
			err = s.CloseSend()
		}
		if err == nil {
			err = s.RecvMsg(&wrapperspb.BytesValue{})
		}
		if err != nil {
			t.Fatal(err)
		}
		scancel()
	}
	for deadline := time.Now().Add(20 * time.Second); c.smallEnded.Load() < n; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d small calls ended", c.smallEnded.Load(), n)
		}
	}
	// The calls' headers and framing are written but not counted queued
	// (about 100 bytes a call): they may take that much.
	if after := SendBacklog(); after < before-64<<10 {
		t.Fatalf("send backlog %d after %d cancelled calls whose bytes were written, was %d: they erased another stream's unread response", after, n, before)
	}
}
