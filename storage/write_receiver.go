package storage

import (
	"context"
	"errors"
	"io"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// writeReceiver receives a Write stream's requests after the first in a
// goroutine of its own, so that the stream can end when its client holds
// it open and sends nothing: such a stream kept its upload's ByteStream
// slot for as long as the client liked (parked uploads give theirs up
// after UploadIdleTimeout), and a few of them refused every other upload.
type writeReceiver struct {
	ctx  context.Context // the stream's
	reqs chan receivedWrite
	idle time.Duration
}

type receivedWrite struct {
	req *bytestream.WriteRequest
	err error
}

// errWriteIdle is next's error when no request came within idle.
var errWriteIdle = errors.New("write stream idle")

func newWriteReceiver(stream bytestream.ByteStream_WriteServer, idle time.Duration) *writeReceiver {
	r := &writeReceiver{ctx: stream.Context(), reqs: make(chan receivedWrite), idle: idle}
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case r.reqs <- receivedWrite{req, err}:
			case <-r.ctx.Done(): // the client has gone, or the handler returned
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// next returns the stream's next request, or errWriteIdle.
func (r *writeReceiver) next() (*bytestream.WriteRequest, error) {
	t := time.NewTimer(r.idle)
	defer t.Stop()
	select {
	case m := <-r.reqs:
		return m.req, m.err
	case <-r.ctx.Done():
		return nil, status.FromContextError(r.ctx.Err()).Err()
	case <-t.C:
		return nil, errWriteIdle
	}
}

// nextWrite receives the next request of a Write stream after the first;
// nil when the stream has ended, with the error to return (nil once a
// half-closed stream has its response). A client that went away or
// half-closed leaves an uncompressed upload parked for a resuming Write;
// every other failure aborts the upload.
func (s *byteStreamServer) nextWrite(stream bytestream.ByteStream_WriteServer, recv *writeReceiver, u *upload, compressed bool) (*bytestream.WriteRequest, error) {
	req, err := recv.next()
	if err == errWriteIdle {
		if compressed {
			s.abort(u, err)
			return nil, status.Errorf(codes.DeadlineExceeded, "no request for %v: the compressed upload is dropped", recv.idle)
		}
		s.park(u)
		return nil, status.Errorf(codes.DeadlineExceeded, "no request for %v: the upload is kept at %d bytes for a resuming Write", recv.idle, u.committed.Load())
	}
	if err == io.EOF && compressed {
		err = status.Errorf(codes.InvalidArgument, "stream ended at %d compressed bytes without finish_write; compressed uploads cannot be resumed", u.committed.Load())
		s.abort(u, err)
		return nil, err
	}
	if err == io.EOF {
		// The spec: a client that closes its side hears a WriteResponse
		// with the committed size, and may resume from there. Aborted,
		// its committed prefix was lost and its QueryWriteStatus NOT_FOUND.
		s.park(u)
		return nil, stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: u.committed.Load()})
	}
	if err != nil {
		if compressed {
			s.abort(u, err)
		} else {
			s.park(u)
		}
		return nil, err
	}
	if req.ResourceName != "" && req.ResourceName != u.name {
		err := status.Errorf(codes.InvalidArgument, "resource_name %q differs from the stream's first %q", req.ResourceName, u.name)
		s.abort(u, err)
		return nil, err
	}
	return req, nil
}
