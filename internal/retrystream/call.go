// Package retrystream holds the storage streams that are opened again
// after a failure for a passing reason: a ByteStream Read resumed from
// where it broke, and a ByteStream Write written again from its first
// byte. The client's retry policy (client.RetryPolicy) and the worker's
// wait for storage (worker.StorageDialOptions) differ in which failures
// pass and how long they wait; they share these streams, whose rules
// (what may be sent again, from where, under which upload id) are REv2's
// and the same for both.
package retrystream

import (
	"context"

	"google.golang.org/grpc"
)

// ByteStreamRead and ByteStreamWrite are the ByteStream methods the
// generated client has no constants for.
const (
	ByteStreamRead  = "/google.bytestream.ByteStream/Read"
	ByteStreamWrite = "/google.bytestream.ByteStream/Write"
)

// Retrier is the caller's rule for trying a call again: which failures
// pass, and the pauses and budget of the tries.
type Retrier interface {
	// Retryable tells whether a call of method under ctx that failed with
	// err may be tried again.
	Retryable(ctx context.Context, method string, err error) bool
	// Retry calls try again, after pauses, while it fails for a passing
	// reason, within the call's budget, and returns its last error; err
	// is the failure that began it, one Retryable allows. The budget is
	// the whole call's, however often its stream is opened again.
	Retry(ctx context.Context, method string, err error, try func() error) error
}

// Call is what opening a stream again takes of the call that first opened
// it (the arguments its stream interceptor got), and the caller's rule
// for trying again.
type Call struct {
	Ctx      context.Context
	Desc     *grpc.StreamDesc
	CC       *grpc.ClientConn
	Method   string
	Streamer grpc.Streamer
	Opts     []grpc.CallOption
	Retrier  Retrier
}

// Open opens the call's stream once more.
func (c *Call) Open() (grpc.ClientStream, error) {
	return c.Streamer(c.Ctx, c.Desc, c.CC, c.Method, c.Opts...)
}

// OpenRetrying opens a stream that could not be opened (err) again under
// the call's Retry. Nothing was sent on it, so even a Write may be.
func (c *Call) OpenRetrying(err error) (grpc.ClientStream, error) {
	var s grpc.ClientStream
	err = c.retry(err, func() error {
		var err error
		s, err = c.Open()
		return err
	})
	return s, err
}

func (c *Call) retryable(err error) bool { return c.Retrier.Retryable(c.Ctx, c.Method, err) }

func (c *Call) retry(err error, try func() error) error {
	return c.Retrier.Retry(c.Ctx, c.Method, err, try)
}
