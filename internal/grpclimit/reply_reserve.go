package grpclimit

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// A reply is counted in the send backlog from the moment gRPC takes it
// (its OutPayload stat), but gRPC's writer may put it on the socket before
// that stat comes: a write the count does not expect looks like framing,
// and the payload was counted again when the stat came. Nothing would be
// queued, yet the connection showed a backlog; idle for StallTimeout, it
// was closed as stalled with every other call on it (an Execute waiting
// on a long action, say). A reply reserved before it is handed has its
// room in the count already, so the early write takes from that.
// Handlers that wait for room (WaitToSend) reserve their own; every other
// reply is reserved here, at its size, without waiting: the bound is for
// the large replies, which all wait.

// reserveReply reserves room for m on ctx's connection, unless the call
// holds a reservation already.
func reserveReply(ctx context.Context, m any) {
	rpc, _ := ctx.Value(sendRPCKey{}).(*sendRPC)
	if rpc == nil || rpc.conn == nil || rpc.reserved.Load() != 0 {
		return
	}
	pm, ok := m.(proto.Message)
	if !ok {
		return
	}
	n := int64(proto.Size(pm)) + grpcMessageHeader
	rpc.reserved.Add(n)
	rpc.conn.reserve(n)
}

// grpcMessageHeader is the length-prefix gRPC puts before each message,
// counted in its OutPayload's WireLength.
const grpcMessageHeader = 5

// reservingReplies reserves each unary reply before gRPC takes it.
func reservingReplies(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err == nil {
		reserveReply(ctx, resp)
	}
	return resp, err
}
