package retrystream

import (
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/digest"
)

// Read is a server-streaming storage call (a ByteStream Read, or a
// GetTree) that is opened again when it fails for a passing reason: a
// ByteStream Read from the first byte not yet received (CAS bytes never
// change, so the caller reads on as if nothing had happened, and a whole
// read is still checked against its digest by the reader above), any
// other call only before its first message. A compressed Read resumes
// only before its first message too, as its read_offset counts
// uncompressed bytes. The one request is kept to be sent again. Like any
// ClientStream, not for concurrent RecvMsg calls.
type Read struct {
	grpc.ClientStream
	call *Call

	req      any   // the request, as the caller sent it
	got      bool  // a message was received
	received int64 // bytes of a ByteStream Read received so far
}

// NewRead wraps s, the stream call opened.
func NewRead(s grpc.ClientStream, call *Call) *Read {
	return &Read{ClientStream: s, call: call}
}

// SendMsg keeps the request. io.EOF (the stream already broke) is not
// returned: RecvMsg then returns the stream's status, and resumes.
func (s *Read) SendMsg(m any) error {
	s.req = m
	if err := s.ClientStream.SendMsg(m); err != io.EOF {
		return err
	}
	return nil
}

func (s *Read) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err != nil && s.call.retryable(err) && s.resumable() {
		err = s.call.retry(err, func() error { return s.reopen(m) })
	}
	if err == nil {
		s.got = true
		if r, ok := m.(*bytestream.ReadResponse); ok {
			s.received += int64(len(r.Data))
		}
	}
	return err
}

// resumable tells whether the call may be opened again.
func (s *Read) resumable() bool {
	if s.req == nil {
		return false
	}
	if !s.got {
		return true
	}
	r, ok := s.req.(*bytestream.ReadRequest)
	if !ok {
		return false
	}
	rn, err := digest.ParseReadResourceName(r.ResourceName)
	return err == nil && rn.Compressor == repb.Compressor_IDENTITY
}

// reopen opens the call again with the request, a Read's moved past what
// was received, and receives its first message into m.
func (s *Read) reopen(m any) error {
	req := s.req
	if r, ok := req.(*bytestream.ReadRequest); ok && s.received > 0 {
		resumed := &bytestream.ReadRequest{ResourceName: r.ResourceName, ReadOffset: r.ReadOffset + s.received}
		if r.ReadLimit > 0 {
			if resumed.ReadLimit = r.ReadLimit - s.received; resumed.ReadLimit <= 0 {
				return io.EOF // all that was asked for has come
			}
		}
		req = resumed
	}
	cs, err := s.call.Open()
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
