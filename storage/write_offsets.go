package storage

import (
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// writeCursor follows the write_offsets of one Write stream: each request
// must start where the stream's previous one ended, as the spec asks, and
// the first may start anywhere up to what the upload has committed. A
// resuming client may start below that: its QueryWriteStatus can come
// while the stream that broke is still handing its last bytes to the Put
// (Bazel asks within milliseconds of the error), and the answer is then
// short of what is committed by the time it resumes. Refused
// INVALID_ARGUMENT, which Bazel does not retry, the bytes it sends again
// are skipped instead: the blob is content-addressed, and Put checks the
// whole against the digest. For a compressed upload, which always starts
// at 0 and is never resumed, offsets count compressed bytes, as committed
// does.
type writeCursor struct {
	next int64 // the offset the stream's next request must have
}

// take returns the part of req's data past committed, and moves the
// cursor past req; ok is false for an offset the stream may not send.
func (c *writeCursor) take(req *bytestream.WriteRequest, committed int64) (data []byte, ok bool) {
	// A negative offset is never one: math.MinInt64 made the bytes to skip
	// overflow into a negative slice index, and the whole process died of
	// one request (outside probe); -1 skipped a byte of the data.
	if req.WriteOffset < 0 || req.WriteOffset != c.next || req.WriteOffset > committed {
		return nil, false
	}
	c.next += int64(len(req.Data))
	skip := min(committed-req.WriteOffset, int64(len(req.Data)))
	return req.Data[skip:], true
}

// finishWrite completes an upload at finish_write: all the bytes are
// there (for an uncompressed one), Put has stored them, and the client
// hears the committed size.
func (s *byteStreamServer) finishWrite(stream bytestream.ByteStream_WriteServer, u *upload, d digest.Digest, compressed bool, complete func() error) error {
	if !compressed && u.committed.Load() != d.SizeBytes() {
		err := countMismatch(s.opts.CAS, status.Errorf(codes.InvalidArgument, "finish_write at %d bytes, but size_bytes is %d", u.committed.Load(), d.SizeBytes()))
		s.abort(u, err)
		return err
	}
	u.pw.Close()
	<-u.done
	s.remove(u)
	if u.err != nil {
		return u.err
	}
	if compressed {
		return stream.SendAndClose(&bytestream.WriteResponse{CommittedSize: u.committed.Load()})
	}
	return complete()
}

// refuseOffset ends a Write whose write_offset is not one it may send
// (writeCursor): u is parked for a resume from there, or, with nothing committed
// to resume, dropped, so that an upload a refused call started does not
// stay behind, holding a slot and a file, for QueryWriteStatus to report
// as in progress.
func (s *byteStreamServer) refuseOffset(u *upload, offset, want int64) error {
	err := status.Errorf(codes.InvalidArgument, "write_offset %d, but %d bytes are committed; resume from there", offset, u.committed.Load())
	if offset != want {
		err = status.Errorf(codes.InvalidArgument, "write_offset %d, but the stream's requests so far end at %d", offset, want)
	}
	if u.committed.Load() == 0 {
		s.abort(u, err)
	} else {
		s.park(u)
	}
	return err
}
