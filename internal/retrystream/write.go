package retrystream

import (
	"cmp"
	"fmt"
	"io"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/digest"
)

// writeAgainChunk is the most data one request of a Write written again
// carries: storage's own chunk size.
const writeAgainChunk = 1 << 20

// Write is a ByteStream Write whose blob's bytes can be read again
// (storage.WriteSource: a file, or bytes in memory). When its answer is
// a failure for a passing reason, however much was sent, the blob is
// written again from its first byte on a new stream under a new upload
// id (the server may keep the broken upload under the old one, or still
// be writing it), read from that source, and the caller gets that
// stream's answer. A storage front opens every Write and fails it only
// once it finds the shard it writes to down, so a retry of the opening
// alone is not enough. Nothing the caller sends is kept (an upload may be
// gigabytes), and a broken upload is not resumed (QueryWriteStatus): a
// front drops what it had forwarded, and writing again is correct
// everywhere. Like any ClientStream, not for concurrent SendMsg or
// RecvMsg calls.
type Write struct {
	grpc.ClientStream
	call *Call

	src  *io.SectionReader // the blob's bytes, read with ReadAt only
	name string            // the resource name of the caller's first request
}

// NewWrite wraps s, the stream call opened, whose blob's bytes src holds.
func NewWrite(s grpc.ClientStream, call *Call, src *io.SectionReader) *Write {
	return &Write{ClientStream: s, call: call, src: src}
}

// SendMsg notes the resource name of the first request.
func (s *Write) SendMsg(m any) error {
	if r, ok := m.(*bytestream.WriteRequest); ok && s.name == "" {
		s.name = r.ResourceName
	}
	return s.ClientStream.SendMsg(m)
}

// RecvMsg receives the Write's answer into m, writing the blob again
// while the answer is a failure for a passing reason. A Write that is not
// of the source's bytes (a compressed one, or not the source's size) is
// answered as it was.
func (s *Write) RecvMsg(m any) error {
	err := s.ClientStream.RecvMsg(m)
	if err == nil || !s.call.retryable(err) {
		return err
	}
	rn, perr := digest.ParseWriteResourceName(s.name)
	if perr != nil || rn.Compressor != repb.Compressor_IDENTITY || rn.Digest.SizeBytes() != s.src.Size() {
		return err
	}
	return s.call.retry(err, func() error { return s.writeAgain(rn, m) })
}

// writeAgain writes the whole blob on a new stream under a new upload id
// and receives its answer into m.
func (s *Write) writeAgain(rn digest.ResourceName, m any) error {
	cs, err := s.call.Open()
	if err != nil {
		return err
	}
	s.ClientStream = cs // its header and trailer are the answer's
	rn.UploadID = uuid.NewString()
	if err := s.send(cs, rn); err != nil {
		return err
	}
	if err := cs.CloseSend(); err != nil {
		return err
	}
	return cs.RecvMsg(m)
}

// send sends the blob rn names, read from s.src, the first request named
// rn. It stops early, with no error, where the stream ends (io.EOF):
// RecvMsg then tells why (the blob was there already, or an error).
func (s *Write) send(cs grpc.ClientStream, rn digest.ResourceName) error {
	size := s.src.Size()
	buf := make([]byte, min(size, writeAgainChunk))
	for off := int64(0); ; {
		chunk := buf[:min(int64(len(buf)), size-off)]
		if n, err := s.src.ReadAt(chunk, off); n < len(chunk) {
			return fmt.Errorf("write %s again: read its bytes at %d: %w", rn.Digest, off, cmp.Or(err, io.ErrUnexpectedEOF))
		}
		last := off+int64(len(chunk)) == size
		req := &bytestream.WriteRequest{WriteOffset: off, Data: chunk, FinishWrite: last}
		if off == 0 {
			req.ResourceName = rn.String()
		}
		if err := cs.SendMsg(req); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		if last {
			return nil
		}
		off += int64(len(chunk))
	}
}
