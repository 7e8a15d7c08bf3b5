package client

import (
	"context"
	"errors"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/retrystream"
	"github.com/paddock-build/paddock/storage"
)

// retriedMethods are the storage calls the interceptors try again: each
// reads, or writes content named by its digest, so a second try has the
// effect of one. Every other call on the connection (Execute and
// WaitExecution, which Execute resumes itself) passes through as it is.
var retriedMethods = map[string]bool{
	repb.ContentAddressableStorage_FindMissingBlobs_FullMethodName: true,
	repb.ContentAddressableStorage_BatchReadBlobs_FullMethodName:   true,
	repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName: true,
	repb.ActionCache_GetActionResult_FullMethodName:                true,
	repb.ActionCache_UpdateActionResult_FullMethodName:             true,
	repb.Capabilities_GetCapabilities_FullMethodName:               true,
	retrystream.ByteStreamRead:                                     true,
	retrystream.ByteStreamWrite:                                    true,
}

// DialOptions are the options of a connection whose storage calls
// (retriedMethods) are tried again under p, whatever call site makes them:
// a unary call whole, and also when an entry of its batch reply failed
// for a passing reason (a storage front answers a batch OK with an
// UNAVAILABLE entry for each blob on a shard that is down); a ByteStream
// Read that breaks part way from where it broke (retrystream.Read); a
// ByteStream Write written again whole under a new upload id when its
// bytes can be read again (retrystream.Write: an input file; otherwise only
// while it cannot open). The connection also reconnects on p's schedule, not
// gRPC's own (1 s growing to 120 s): while it waits to reconnect, every
// call fails at once, and the retries would be spent before it tried.
func (p RetryPolicy) DialOptions() []grpc.DialOption {
	p = p.withDefaults()
	return []grpc.DialOption{
		grpc.WithChainUnaryInterceptor(p.unary),
		grpc.WithChainStreamInterceptor(p.stream),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: p.FirstPause, Multiplier: 2, Jitter: retryJitter, MaxDelay: p.MaxPause},
			MinConnectTimeout: 20 * time.Second, // gRPC's default
		}),
	}
}

// unary is the interceptor of unary calls.
func (p RetryPolicy) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	if !retriedMethods[method] {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	try := func() error {
		if err := invoker(ctx, method, req, reply, cc, opts...); err != nil {
			return err
		}
		return retryableEntry(ctx, reply)
	}
	r := retrier{p: p}
	err := r.do(ctx, try(), try)
	if errors.As(err, new(entryError)) {
		return nil // an answer: the caller reads the entries' statuses
	}
	return err
}

// entryError is the status of an entry of a batch reply that failed for
// a passing reason: the whole batch is sent again (its other blobs are
// read or stored again, which a batch's size bounds).
type entryError struct{ err error }

func (e entryError) Error() string { return e.err.Error() }
func (e entryError) Unwrap() error { return e.err }

// retryableEntry is an entryError of the first entry of reply, if it is a
// batch reply, that failed for a passing reason; nil if none did.
func retryableEntry(ctx context.Context, reply any) error {
	switch r := reply.(type) {
	case *repb.BatchReadBlobsResponse:
		return firstRetryable(ctx, r.Responses)
	case *repb.BatchUpdateBlobsResponse:
		return firstRetryable(ctx, r.Responses)
	}
	return nil
}

func firstRetryable[E interface{ GetStatus() *rpcstatus.Status }](ctx context.Context, es []E) error {
	for _, e := range es {
		if retryableCode(ctx, codes.Code(e.GetStatus().GetCode())) {
			return entryError{status.ErrorProto(e.GetStatus())}
		}
	}
	return nil
}

// stream is the interceptor of streaming calls: it opens the stream,
// trying again while it cannot, and wraps a Read in a retrystream.Read
// and a Write whose bytes can be read again in a retrystream.Write.
func (p RetryPolicy) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if !retriedMethods[method] {
		return streamer(ctx, desc, cc, method, opts...)
	}
	// One retrier for the whole call: its budget counts every reopening.
	call := &retrystream.Call{Ctx: ctx, Desc: desc, CC: cc, Method: method, Streamer: streamer, Opts: opts, Retrier: &retrier{p: p}}
	s, err := call.Open()
	if err != nil {
		if !Retryable(ctx, err) {
			return nil, err
		}
		if s, err = call.OpenRetrying(err); err != nil {
			return nil, err
		}
	}
	switch method {
	case retrystream.ByteStreamRead:
		return retrystream.NewRead(s, call), nil
	case retrystream.ByteStreamWrite:
		if src, ok := storage.WriteSource(ctx); ok {
			return retrystream.NewWrite(s, call, src), nil
		}
	}
	return s, nil
}
