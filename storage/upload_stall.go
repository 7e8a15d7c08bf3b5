package storage

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// putStallTimeout bounds how long a Put may take none of the bytes it is
// handed (handToPut). A var for tests.
var putStallTimeout = time.Minute

// callEndGrace is how long the bytes being handed to a Put when the
// client's call ends may still take to go in (handToPut).
const callEndGrace = 5 * time.Second

// handingCallEnded is called when a Write's call ends while it hands
// bytes to its Put: a hook for tests, which must know the call ended
// there.
var handingCallEnded = func() {}

// Where a Write handing bytes to its Put stands (handToPut).
const (
	handing int32 = iota
	handed
	stalledPut
	callEnded
)

// handToPut hands data to u's Put through its pipe. A Put that stops
// taking bytes (its backend stalled: an S3 endpoint that accepts a part
// and never reads its body) held this call, its stream slot and its
// upload name with no end, after the client had long given up. The
// upload is aborted when the Put takes none of data for putStallTimeout:
// then the error is a putStalledError (UNAVAILABLE: the client may upload
// again); and when the client's call ends and the Put has not taken data
// within callEndGrace. The Put's context is cancelled either way, which
// ends the backend's request. Only a write still blocked is aborted: one
// that returned goes on as before, and once the call has ended the Write
// parks the upload for a resume (nextWrite). Aborted at once, a client
// whose connection broke mid-write (the pipe is synchronous, so a live
// stream is mostly here) lost its committed prefix: QueryWriteStatus
// said NOT_FOUND, and Bazel's resume at the offset it had was refused.
func (s *byteStreamServer) handToPut(ctx context.Context, u *upload, data []byte) error {
	var state atomic.Int32
	why := status.Errorf(codes.Unavailable, "ByteStream Write: the storage backend took no bytes of %s for %s; upload it again", u.d, putStallTimeout)
	stalled := time.AfterFunc(putStallTimeout, func() {
		if state.CompareAndSwap(handing, stalledPut) {
			s.abort(u, why)
		}
	})
	defer stalled.Stop()
	ended := context.AfterFunc(ctx, func() {
		handingCallEnded()
		// Once data is handed, the timer finds nothing to do.
		time.AfterFunc(callEndGrace, func() {
			if state.CompareAndSwap(handing, callEnded) {
				s.abort(u, status.FromContextError(ctx.Err()).Err())
			}
		})
	})
	defer ended()
	_, err := u.pw.Write(data)
	if state.CompareAndSwap(handing, handed) {
		return err
	}
	if state.Load() == stalledPut {
		return putStalledError{why}
	}
	return status.FromContextError(ctx.Err()).Err()
}

// putStalledError is handToPut's error of a Put that took no bytes for
// UploadIdleTimeout: the call's answer, rather than the Put's own error
// (its context cancelled).
type putStalledError struct{ error }

func (e putStalledError) Unwrap() error { return e.error }

// GRPCStatus gives the status of the error it wraps.
func (e putStalledError) GRPCStatus() *status.Status { return status.Convert(e.error) }

func isPutStalled(err error) bool {
	var p putStalledError
	return errors.As(err, &p)
}
