package grpclimit

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
)

// Responses a client does not read stay in the server's memory: gRPC
// queues a response whole and writes it as the client's HTTP/2 window
// allows, so a client that announces a window of 0 and never reads keeps
// every response it asked for. 500 BatchReadBlobs calls for a 3 MiB blob,
// on one connection and a few kilobytes sent, took `paddock up` to 2.3 GB;
// nothing in grpc-go bounds it. The send backlog bounds it: a handler
// about to produce a large response (WaitToSend) first waits until its
// connection has fewer than MaxConnBacklog bytes of responses queued and
// not yet written to the socket, and the whole process fewer than
// MaxBacklog; and a connection with bytes queued that writes none for
// StallTimeout is closed, which frees what it held (ConnLimits).
//
// The bytes queued are counted from a reservation made before gRPC takes
// the reply (WaitToSend, or reserveReply for the replies that do not
// wait), corrected to the payload's size once gRPC takes it; the bytes written, from the
// socket (TrackSends wraps the listener). Headers and framing are written
// but not queued, so a connection's count never goes below zero. What a
// reset stream had queued, gRPC drops unwritten: at the call's end it
// leaves the count (streamUnsent).

// A client can also hold the server's memory the other way: gRPC reads a
// request message as it arrives, so a client that sends all of a 4 MiB
// BatchUpdateBlobs but its last byte keeps 4 MiB in the server for as
// long as it keeps the connection (200 such calls held 870 MB of `paddock
// up`). A connection with a unary call whose request has not arrived in
// full within RequestTimeout is closed, as is one with a ByteStream upload
// whose next message has not, from the time the server asked for it
// (timedStreams).

// ConnLimits bound what a connection may keep in the server's memory.
type ConnLimits struct {
	// MaxConnBacklog bounds one connection's backlog. Default 16 MiB.
	MaxConnBacklog int64
	// MaxBacklog bounds the process's. Default 256 MiB.
	MaxBacklog int64
	// StallTimeout is how long a connection with a backlog may write
	// nothing before it is closed. Default 30 s.
	StallTimeout time.Duration
	// RequestTimeout is how long a unary call's request, or the next
	// message of a ByteStream upload once the server asks for it, may
	// take to arrive in full (a 4 MiB batch takes 32 s at 1 Mbit/s)
	// before its connection is closed.
	// Default 2 minutes.
	RequestTimeout time.Duration
}

// DefaultConnLimits are the limits unless SetConnLimits changes them.
func DefaultConnLimits() ConnLimits {
	return ConnLimits{MaxConnBacklog: 16 << 20, MaxBacklog: 256 << 20, StallTimeout: 30 * time.Second, RequestTimeout: 2 * time.Minute}
}

var connLimits atomic.Pointer[ConnLimits]

func init() {
	l := DefaultConnLimits()
	connLimits.Store(&l)
}

// SetConnLimits replaces the limits (for tests, which need them small)
// and returns the function that puts the previous ones back.
func SetConnLimits(l ConnLimits) (restore func()) {
	old := connLimits.Swap(&l)
	return func() { connLimits.Store(old) }
}

// backlogPoll is how often a waiting handler looks again.
const backlogPoll = 10 * time.Millisecond

// sendConn is a tracked connection.
type sendConn struct {
	net.Conn
	mu      sync.Mutex
	queued  int64 // bytes handed to gRPC (or reserved), never below written
	written int64
	// reserving is the part of queued that handlers have reserved
	// (WaitToSend) and not yet handed to gRPC: the reply is still being
	// made, perhaps from a slow backend, and no client is late to read
	// it. Counted as a backlog the client failed to read, a batch read
	// waiting 30 s on a hung mirror side got its client's whole
	// connection closed.
	reserving    int64
	lastProgress time.Time // see progressed
	progressAt   int64     // written at lastProgress
	ackedAt      int64     // the peer's acknowledged bytes at the reaper's last progress (ackedProgress)
	closed       bool
	// receiving holds the unary calls whose request has not arrived in
	// full, with when they began.
	receiving map[*sendRPC]time.Time
}

var backlog struct {
	total atomic.Int64 // the sum of the connections' backlogs
	mu    sync.Mutex
	conns map[string]*sendConn // by local and remote address
	once  sync.Once
}

func connKeyOf(local, remote net.Addr) string { return local.String() + "|" + remote.String() }

// SendBacklog is the process's send backlog: bytes of responses queued on
// tracked connections and not yet written.
func SendBacklog() int64 { return backlog.total.Load() }

// TrackSends wraps lis so that its connections' writes count against the
// send backlog of the gRPC servers built with ServerOptions.
func TrackSends(lis net.Listener) net.Listener {
	backlog.once.Do(func() {
		backlog.conns = map[string]*sendConn{}
		go reapStalled()
	})
	return trackingListener{lis}
}

type trackingListener struct{ net.Listener }

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	sc := &sendConn{Conn: c, lastProgress: time.Now(), receiving: map[*sendRPC]time.Time{}}
	backlog.mu.Lock()
	backlog.conns[connKeyOf(c.LocalAddr(), c.RemoteAddr())] = sc
	backlog.mu.Unlock()
	return sc, nil
}

// minProgress is how many bytes a connection with a backlog must write
// within StallTimeout, unless it empties its backlog, not to be closed as
// stalled. Any write had counted, and a client that let a byte of its
// window through every 10 s (or only sent PINGs, which the server
// answers) kept 16 MiB of replies queued on each of 17 connections: the
// whole process's backlog, for as long as it liked, while every other
// client's reads waited (outside probe). 64 KiB in 30 s is 2 KiB/s.
const minProgress = 64 << 10

func (c *sendConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	before := c.queued - c.written
	c.written += int64(n)
	c.queued = max(c.queued, c.written)
	if c.written-c.progressAt >= minProgress || c.unread() <= 0 {
		c.progressed()
	}
	backlog.total.Add(c.queued - c.written - before)
	c.mu.Unlock()
	return n, err
}

// progressed notes that c's client has read what it must (minProgress, or
// its whole backlog), or has a backlog again after none: the time from
// which a stall is counted. Called with c.mu held.
func (c *sendConn) progressed() {
	c.lastProgress = time.Now()
	c.progressAt = c.written
}

// Close takes c.mu and backlog.mu one after the other, never one inside
// the other: the reaper holds backlog.mu while it takes each c.mu, and a
// Close that held c.mu while it waited for backlog.mu deadlocked with it,
// after which every Accept and Close of every listener waited forever
// (an unauthenticated client resetting 2,000 connections at a time froze
// the whole farm, health checks and metrics included).
func (c *sendConn) Close() error {
	c.mu.Lock()
	first := !c.closed
	if first {
		c.closed = true
		backlog.total.Add(-(c.queued - c.written))
		c.queued = c.written
	}
	c.mu.Unlock()
	if first {
		backlog.mu.Lock()
		delete(backlog.conns, connKeyOf(c.LocalAddr(), c.RemoteAddr()))
		backlog.mu.Unlock()
	}
	return c.Conn.Close()
}

// add changes the bytes queued on c by n (a reservation's correction, or
// bytes gRPC dropped).
func (c *sendConn) add(n int64) { c.change(n, 0) }

// reserve adds n reserved bytes to the backlog (WaitToSend), or takes
// away -n of them, handed or dropped.
func (c *sendConn) reserve(n int64) { c.change(n, n) }

// change adds n to the bytes queued on c, reserved of them.
func (c *sendConn) change(n, reserved int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	before, unreadBefore := c.queued-c.written, c.unread()
	c.queued = max(c.queued+n, c.written)
	c.reserving = max(c.reserving+reserved, 0)
	if unreadBefore <= 0 && c.unread() > 0 {
		c.progressed()
	}
	backlog.total.Add(c.queued - c.written - before)
}

// unread is the backlog that is the client's to read: handed to gRPC and
// not written. Called with c.mu held.
func (c *sendConn) unread() int64 { return c.queued - c.reserving - c.written }

// receive records that rpc's request is arriving (begun) or has arrived
// (the zero time).
func (c *sendConn) receive(rpc *sendRPC, begun time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if begun.IsZero() {
		delete(c.receiving, rpc)
	} else if !c.closed {
		c.receiving[rpc] = begun
	}
}

func (c *sendConn) backlog() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queued - c.written
}

type sendConnKey struct{}
type sendRPCKey struct{}

// sendRPC is one call's reservation on its connection, and what it has
// handed gRPC.
type sendRPC struct {
	conn        *sendConn
	reserved    atomic.Int64
	handed      atomic.Int64 // wire bytes of the responses gRPC took
	timedStream bool         // one of timedStreams
	public      bool         // one of publicMethods
	// publicStream: a public method that streams its replies (health
	// Watch). gRPC reads on past its one request, to check that no
	// second one comes, and holds what does come of one (up to 5 MiB):
	// the wait is timed until the client ends its side, not until the
	// first request is in.
	publicStream bool
}

// streamWriteQuota is grpc-go's per-stream write quota (its
// defaultWriteQuota), which each stream starts with (streamUnsent).
const streamWriteQuota = 64 << 10

// WaitToSend waits until the caller's connection, and the process, have
// room in their send backlogs for a response of n bytes (a connection
// with nothing queued always has room, as has a process), and reserves
// it; or returns ctx's error. Outside a server with ServerOptions and a
// TrackSends listener it returns at once.
func WaitToSend(ctx context.Context, n int64) error {
	rpc, _ := ctx.Value(sendRPCKey{}).(*sendRPC)
	if rpc == nil || rpc.conn == nil {
		return nil
	}
	for {
		if admit(rpc, n) {
			return nil
		}
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-time.After(backlogPoll):
		}
	}
}

// admitMu makes WaitToSend's look at the backlogs and its reservation one
// step: each looked and then reserved, so that handlers asking at once
// all saw the same room and all took it (six 3 MiB replies admitted on a
// connection whose 16 MiB hold five). Others change the backlogs
// meanwhile only by taking from them (writes) or correcting what was
// reserved.
var admitMu sync.Mutex

// admit reserves n for rpc if its connection, and the process, have room
// for it (a connection with nothing queued always has, as has a process).
func admit(rpc *sendRPC, n int64) bool {
	admitMu.Lock()
	defer admitMu.Unlock()
	l := connLimits.Load()
	own := rpc.conn.backlog()
	total := backlog.total.Load()
	if (own == 0 || own+n <= l.MaxConnBacklog) && (total == 0 || total+n <= l.MaxBacklog) {
		rpc.reserved.Add(n)
		rpc.conn.reserve(n)
		return true
	}
	return false
}

// tagSendConn and handleSend are the stats.Handler side: the connection
// of each call, and the reservations corrected to what gRPC took (an
// OutPayload) or dropped (the call's end).
func tagSendConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if info.LocalAddr == nil || info.RemoteAddr == nil {
		return ctx
	}
	backlog.mu.Lock()
	c := backlog.conns[connKeyOf(info.LocalAddr, info.RemoteAddr)]
	backlog.mu.Unlock()
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, sendConnKey{}, c)
}

func tagSendRPC(ctx context.Context, method string) context.Context {
	c, _ := ctx.Value(sendConnKey{}).(*sendConn)
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, sendRPCKey{}, &sendRPC{conn: c, timedStream: timedStreams[method], public: publicMethods[method]})
}

// timedStreams are the client-streaming methods whose messages should
// follow one another without pause, so that each is timed like a unary
// request: from the call's start, then from each time the server asks
// for the next message (receivingStreams) to its arrival. A ByteStream upload
// that stops in the middle of a chunk holds that chunk, up to 4 MiB, as
// a stopped unary request would. The time the server spends between
// messages is not the client's: timed from the last message, an upload
// whose server waited minutes for room in a full CAS had its connection
// closed, since flow control kept its next message from arriving.
var timedStreams = map[string]bool{"/google.bytestream.ByteStream/Write": true}

// publicMethods are the methods anyone may call, without credentials:
// gRPC health. Their requests are a service name, sent at once by any
// probe, so they have publicRequestTimeout to arrive, not RequestTimeout:
// a request is held in memory as it arrives, up to the server's largest
// (5 MiB), and anonymous Checks whose requests never finished held 80 MiB
// on each connection for the two minutes of RequestTimeout.
var publicMethods = map[string]bool{"/grpc.health.v1.Health/Check": true, "/grpc.health.v1.Health/Watch": true}

// publicRequestTimeout is how long a public method's request may take to
// arrive before its connection is closed.
const publicRequestTimeout = 5 * time.Second

func handleSend(ctx context.Context, s stats.RPCStats) {
	rpc, _ := ctx.Value(sendRPCKey{}).(*sendRPC)
	if rpc == nil {
		return
	}
	switch s := s.(type) {
	case *stats.Begin:
		if !s.IsClientStream || rpc.timedStream {
			rpc.conn.receive(rpc, s.BeginTime)
		}
		rpc.publicStream = rpc.public && s.IsServerStream
	case *stats.InPayload:
		if !rpc.publicStream { // receivingStream ends its wait
			rpc.conn.receive(rpc, time.Time{})
		}
	case *stats.OutPayload:
		rpc.handed.Add(int64(s.WireLength))
		r := rpc.reserved.Swap(0)
		// One change, not the reservation's release then the payload's
		// addition: gRPC may have written the payload already, and the
		// release alone then fell below the bytes written, was raised to
		// them, and the addition counted the payload a second time (a
		// backlog that stayed above zero with nothing queued).
		rpc.conn.change(int64(s.WireLength)-r, -r)
	case *stats.End:
		rpc.conn.receive(rpc, time.Time{})
		r := rpc.reserved.Swap(0)
		rpc.conn.reserve(-r)
		n := int64(0)
		if cancelled(s.Error) {
			// gRPC drops what a reset stream had queued, which is then
			// never written: counted on, a cancelled download held its
			// connection's backlog above zero for good, and the
			// connection was closed as stalled 30 s later, the client's
			// other calls with it.
			if unsent, ok := streamUnsent(ctx); ok {
				n += min(unsent, rpc.handed.Load())
			}
		}
		rpc.conn.add(-n)
	}
}

// cancelled reports whether a call ended by its stream's reset: the
// client cancelled it or its deadline passed. (A connection that went is
// closed, which clears its count.)
func cancelled(err error) bool {
	switch status.Code(err) {
	case codes.Canceled, codes.DeadlineExceeded:
		return true
	}
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
