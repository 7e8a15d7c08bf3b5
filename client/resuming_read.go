package client

import (
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/digest"
)

// resumingRead is a ByteStream Read that, when it breaks for a passing
// reason (Retryable), is opened again from the first byte not yet
// received, within its call's retry budget: CAS bytes never change, so
// the caller reads on as if nothing had happened (and a whole read is
// still checked against its digest by the reader above). A compressed
// Read resumes only before any bytes came, as its read_offset counts
// uncompressed bytes. Like any ClientStream, not for concurrent RecvMsg
// calls.
type resumingRead struct {
	grpc.ClientStream
	call *streamCall

	req      *bytestream.ReadRequest // as the caller sent it
	received int64                   // bytes received so far
}

// SendMsg keeps the request. io.EOF (the stream already broke) is not
// returned: RecvMsg then returns the stream's status, and resumes.
func (s *resumingRead) SendMsg(m any) error {
	if r, ok := m.(*bytestream.ReadRequest); ok {
		s.req = r
	}
	if err := s.ClientStream.SendMsg(m); err != io.EOF {
		return err
	}
	return nil
}

func (s *resumingRead) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && s.resumable() {
		err = s.call.r.do(s.call.ctx, err, func() error { return s.reopen(m) })
	}
	if r, ok := m.(*bytestream.ReadResponse); ok && err == nil {
		s.received += int64(len(r.Data))
	}
	return err
}

// resumable tells whether the Read may be opened again.
func (s *resumingRead) resumable() bool {
	if s.req == nil {
		return false
	}
	if s.received == 0 {
		return true
	}
	rn, err := digest.ParseReadResourceName(s.req.ResourceName)
	return err == nil && rn.Compressor == repb.Compressor_IDENTITY
}

// reopen opens the Read again past what was received and receives its
// first message into m.
func (s *resumingRead) reopen(m any) error {
	req := &bytestream.ReadRequest{ResourceName: s.req.ResourceName, ReadOffset: s.req.ReadOffset + s.received, ReadLimit: s.req.ReadLimit}
	if req.ReadLimit > 0 {
		if req.ReadLimit -= s.received; req.ReadLimit <= 0 {
			return io.EOF // all that was asked for has come
		}
	}
	cs, err := s.call.open()
	if err != nil {
		return err
	}
	s.ClientStream = cs
	if err := cs.SendMsg(req); err != nil && err != io.EOF {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	return cs.RecvMsg(m)
}
