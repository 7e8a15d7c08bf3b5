package workerclient

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/keepalive"

	"github.com/paddock-build/paddock/api/workerpb"
)

// ReconnectMaxDelay bounds the pause between the connection's attempts to
// reach a scheduler that is away. gRPC's default grows to 120 s: a worker
// whose scheduler was down for half a minute came back only after the
// scheduler's reconnect_grace (10 s by default) had run out, and the
// actions it was running were requeued and run again. It must stay well
// under reconnect_grace: a worker then reconnects within a few seconds of
// the scheduler's return (docs/scheduler.md).
const ReconnectMaxDelay = 2 * time.Second

// Keepalive has the worker ping a scheduler it has heard nothing from for
// Time, and drop the connection when the ping is not answered within
// Timeout. Without it a partition went unnoticed (the session's stream
// only waits), and after it healed the worker's Register crept through
// TCP's retransmission backoff on the old connection, up to two minutes
// (10-53 s measured) in which a healthy worker sat idle. The scheduler's
// policy allows a ping every 5 s (grpclimit.MinPingInterval); the
// session's stream is always open, so no ping goes without a call.
var Keepalive = keepalive.ClientParameters{Time: 15 * time.Second, Timeout: 10 * time.Second}

// DialOptions are gRPC options for a connection to the scheduler that
// carries only the worker protocol (not storage traffic), besides the
// caller's transport credentials: flow-control windows (workerpb.Window),
// a reconnect backoff capped at ReconnectMaxDelay, and Keepalive.
func DialOptions() []grpc.DialOption { return dialOptions(Keepalive) }

func dialOptions(kp keepalive.ClientParameters) []grpc.DialOption {
	reconnect := backoff.DefaultConfig
	reconnect.MaxDelay = ReconnectMaxDelay
	return []grpc.DialOption{
		grpc.WithStaticStreamWindowSize(workerpb.Window), grpc.WithStaticConnWindowSize(workerpb.Window),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnect, MinConnectTimeout: 5 * time.Second}),
		grpc.WithKeepaliveParams(kp),
	}
}
