package workerpb

import "google.golang.org/grpc"

// Window is the flow-control window of a connection that carries only
// the worker protocol, per stream and per connection, on both of its
// sides (the worker's dial options, the scheduler's servers). Set
// explicitly, it turns off gRPC's bandwidth-delay estimation, which pings
// the peer whenever a message arrives and no ping is outstanding: a ping
// and its answer for every assignment the worker gets and every update it
// sends. The protocol's messages are small.
const Window = 1 << 20

// ServerOptions are the flow-control options of a server of the worker
// protocol (see Window).
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.StaticStreamWindowSize(Window), grpc.StaticConnWindowSize(Window)}
}
