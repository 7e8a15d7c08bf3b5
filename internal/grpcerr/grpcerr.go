// Package grpcerr keeps Go's text for a gRPC error out of the statuses a
// server sends. A handler that wraps a status error with context
// (fmt.Errorf("find missing blobs: %w", err)) is answered, by grpc-go, with
// the status's code and details and a message of the whole error text,
// which holds the inner status as "rpc error: code = X desc = ...". Behind a
// front, or through a forwarding chain, that text is repeated once per
// server. The interceptors remove it from the message and keep everything
// else: the code, the details (MISSING violations), the context words.
package grpcerr

import (
	"context"
	"regexp"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// goText is what an inner status error's Error() puts before its message.
var goText = regexp.MustCompile(`rpc error: code = [A-Za-z]+ desc = `)

// Clean returns err with goText removed from its status message; an error
// without it, or without a status, is returned as is.
func Clean(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok || !goText.MatchString(st.Message()) {
		return err
	}
	p := st.Proto()
	p.Message = goText.ReplaceAllString(p.Message, "")
	return status.ErrorProto(p)
}

// Convert is status.Convert of Clean(err): the status a server puts in a
// response body rather than returns (an ExecuteResponse's status, a batch
// entry's), where the interceptors do not reach, or whose message it
// quotes in another error.
func Convert(err error) *status.Status {
	return status.Convert(Clean(err))
}

// ServerOptions are the unary and stream interceptors that Clean every
// handler's error.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			resp, err := h(ctx, req)
			return resp, Clean(err)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return Clean(h(srv, ss))
		}),
	}
}
