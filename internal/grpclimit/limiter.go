// Package grpclimit bounds how many calls a gRPC server runs at once.
// grpc-go accepts any number of streams on a connection, and each costs
// the server a goroutine and its buffers, about 12 KiB while idle: one
// client opened 200,000 idle ByteStream streams on ten connections in
// under a minute, and `paddock up` grew to 2.4 GB; a few times more and
// the kernel would have killed the farm for memory. Past the bound a new
// stream is refused with RESOURCE_EXHAUSTED (which clients retry) before
// the server starts anything for it. The same options set how often a
// client may ping the server (MinPingInterval), and refuse requests whose
// decoding would take memory out of proportion to their size.
package grpclimit

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
)

// Limiter counts a server's calls in progress and refuses new ones past
// its bound. Its ServerOptions install it.
type Limiter struct {
	max    int64
	active atomic.Int64
}

// New returns a Limiter of max calls at once; 0 means DefaultMax.
func New(max int) *Limiter {
	if max <= 0 {
		max = DefaultMax()
	}
	return &Limiter{max: int64(max)}
}

// bytesPerCall is what a call is assumed to cost the server: the 12 KiB
// measured for an idle stream, with room, and its headers at their bound
// (MaxHeaderBytes), which the server keeps for the call's whole life.
const bytesPerCall = 16<<10 + MaxHeaderBytes

// DefaultMax lets calls take an eighth of the memory, and is at least
// 4,096. Open Execute streams are calls too: a farm with 100,000 actions
// in flight needs that many, and has the memory for them (about 1.2 GB
// idle, 3.2 GB with every call's headers at their bound).
func DefaultMax() int {
	total := MemoryBytes()
	if total == 0 {
		return 65536
	}
	return int(max(4096, min(total/8/bytesPerCall, 1<<24)))
}

// MemoryBytes is the machine's memory, or the limit of the cgroup the
// process sees as its root if lower: a container's, in Kubernetes. 0 when
// neither can be read.
func MemoryBytes() uint64 {
	var total uint64
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		total = uint64(si.Totalram) * uint64(si.Unit)
	}
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && v > 0 && (total == 0 || v < total) {
			total = v
		}
	}
	return total
}

// MaxHeaderBytes bounds a call's headers (grpc-go's default is 16 MiB).
// The server keeps a call's headers as long as the call lasts, so a
// stream's headers cost memory for its whole life: at 1 MiB, 2,000 idle
// streams (no credentials needed for the health service) took the farm to
// 2.2 GB. Bazel sends a few hundred bytes (its RequestMetadata and a
// credential; a JWT is a few KiB), and grpc-java, Bazel's gRPC, takes
// 8 KiB of metadata by default itself.
const MaxHeaderBytes = 16 << 10

// ServerOptions returns the options that make a server keep the bound,
// bound each call's headers, refuse requests too costly to decode
// (costCheckingCodec), and take clients' keepalive pings at up to
// one per MinPingInterval. others are the server's other options: the
// Admissions among them (WithAdmission) run in the Limiter's tap, in
// their order, for each stream within the bound. The server's options
// must put these after its others, so that their interceptors are the
// innermost: the one that ends a refused request (refuseMarked) must come
// right before the handler.
func (l *Limiter) ServerOptions(others ...grpc.ServerOption) []grpc.ServerOption {
	admissions := admissionsIn(others)
	chained := func(ctx context.Context, info *tap.Info) (context.Context, error) {
		ctx, err := l.tap(ctx, info)
		for _, admit := range admissions {
			if err != nil {
				break
			}
			ctx, err = admit(ctx, info)
		}
		return ctx, err
	}
	opts := append(keepaliveOptions(), grpc.InTapHandle(chained), grpc.StatsHandler(l), grpc.ChainStreamInterceptor(recoverStream, receivingStreams), grpc.ChainUnaryInterceptor(recoverUnary, reservingReplies), grpc.MaxHeaderListSize(MaxHeaderBytes))
	return append(opts, codecOptions()...)
}

// Active reports the calls in progress.
func (l *Limiter) Active() int64 { return l.active.Load() }

// healthCheck is never refused by the bound: it is quick, and
// orchestrators that probe it would otherwise restart a server that is
// only busy. It still meets the Admissions (WithAdmission): auth bounds
// Checks whose requests never come by a share of their own.
const healthCheck = "/grpc.health.v1.Health/Check"

// tap runs for each new stream, before the server starts a goroutine or
// reads a message for it. The count may overshoot by the streams tapped
// at the same moment, which is no matter for a bound of thousands.
func (l *Limiter) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if l.active.Load() >= l.max && info.FullMethodName != healthCheck {
		return nil, status.Errorf(codes.ResourceExhausted, "this server is running %d calls, as many as it runs at once; retry later", l.max)
	}
	return ctx, nil
}

// TagRPC implements stats.Handler.
func (l *Limiter) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	return tagSendRPC(ctx, info.FullMethodName)
}

// HandleRPC counts calls (every Begin is followed by one End) and the
// bytes of their responses in the send backlog.
func (l *Limiter) HandleRPC(ctx context.Context, s stats.RPCStats) {
	switch s.(type) {
	case *stats.Begin:
		l.active.Add(1)
	case *stats.End:
		l.active.Add(-1)
	}
	handleSend(ctx, s)
}

// TagConn finds the connection's send backlog (TrackSends).
func (l *Limiter) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	return tagSendConn(ctx, info)
}

// HandleConn implements stats.Handler.
func (l *Limiter) HandleConn(context.Context, stats.ConnStats) {}
