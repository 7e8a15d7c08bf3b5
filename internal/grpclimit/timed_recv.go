package grpclimit

import (
	"time"

	"google.golang.org/grpc"
)

// timedRecv times the wait in each RecvMsg of a timedStreams call.
func timedRecv(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	rpc, _ := ss.Context().Value(sendRPCKey{}).(*sendRPC)
	if rpc == nil || !rpc.timedStream {
		return h(srv, ss)
	}
	return h(srv, &timedStream{ss, rpc})
}

type timedStream struct {
	grpc.ServerStream
	rpc *sendRPC
}

func (s *timedStream) RecvMsg(m any) error {
	s.rpc.conn.receive(s.rpc, time.Now())
	err := s.ServerStream.RecvMsg(m)
	s.rpc.conn.receive(s.rpc, time.Time{})
	return err
}
