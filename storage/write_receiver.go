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

// maxSilentWrite bounds how long a Write stream may send nothing, whatever
// UploadIdleTimeout says: under grpclimit's request timeout (2 minutes),
// after which a server closes a connection whose upload's next message
// has not come. A scheduler's front forwards an upload to storage over
// the one connection every tenant's calls share, so its own stream must
// end first: with upload_idle_timeout at 3m, one silent client had
// storage close that connection under everyone.
const maxSilentWrite = 90 * time.Second

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

// next returns the stream's next request, or errWriteIdle. A request
// with no data that does not finish the write is skipped and does not
// count as activity: a client sending only such requests kept its stream,
// and the slot, for as long as it liked, and the remote store of a
// scheduler in front, which forwards data, not empty messages, left
// storage's stream silent past its request timeout, which then closed the
// connection every tenant's calls share.
func (r *writeReceiver) next() (*bytestream.WriteRequest, error) {
	t := time.NewTimer(r.idle)
	defer t.Stop()
	for {
		select {
		case m := <-r.reqs:
			if m.err == nil && len(m.req.Data) == 0 && !m.req.FinishWrite {
				continue
			}
			return m.req, m.err
		case <-r.ctx.Done():
			return nil, status.FromContextError(r.ctx.Err()).Err()
		case <-t.C:
			return nil, errWriteIdle
		}
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
