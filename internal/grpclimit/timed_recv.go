package grpclimit

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// receivingStreams wraps every stream's RecvMsg: to end the call when the
// codec refused a message (refuseMarked's rule for streams), and, for the
// timedStreams, to time the wait for each message from the server asking
// for it to its arrival. It wraps SendMsg to reserve each reply before
// gRPC takes it (reserveReply).
func receivingStreams(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	rpc, _ := ss.Context().Value(sendRPCKey{}).(*sendRPC)
	if rpc != nil && !rpc.timedStream && !rpc.publicStream {
		rpc = nil
	}
	return h(srv, &receivingStream{ss, rpc})
}

type receivingStream struct {
	grpc.ServerStream
	timed *sendRPC // nil: not one of timedStreams, nor a publicStream
}

func (s *receivingStream) SendMsg(m any) error {
	reserveReply(s.Context(), m)
	return s.ServerStream.SendMsg(m)
}

func (s *receivingStream) RecvMsg(m any) error {
	if s.timed != nil && s.timed.timedStream {
		s.timed.conn.receive(s.timed, time.Now())
	}
	// A publicStream's wait is timed from the call's start (Begin) to
	// here, where gRPC has seen the client end its side.
	err := s.ServerStream.RecvMsg(m)
	if s.timed != nil {
		s.timed.conn.receive(s.timed, time.Time{})
	}
	if err == nil {
		if why, ok := refusal(m); ok {
			return status.Error(codes.InvalidArgument, why)
		}
	}
	return err
}
