package storage

import (
	"context"
	"fmt"
	"io"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// writeStream uploads d, its bytes read from r, with ByteStream. Each
// message carries what one Read of r returns, and the stream opens with
// the first: r may be a slow client's upload through a scheduler, and
// the server closes a connection when an upload's next message takes
// longer than its request timeout. That connection is shared by every
// tenant's calls through the scheduler, so waiting to fill a whole chunk
// let one client trickling its upload fail everyone else's calls.
func (s *RemoteBlobStore) writeStream(ctx context.Context, d digest.Digest, r io.Reader) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	name := digest.ResourceName{InstanceName: s.instance(ctx), UploadID: uuid.NewString(), Digest: d}.String()
	buf := make([]byte, streamChunkBytes)
	var stream bytestream.ByteStream_WriteClient
	var off int64
	for {
		n, rerr := r.Read(buf)
		if rerr != nil && rerr != io.EOF {
			return rerr
		}
		if off+int64(n) > d.SizeBytes() {
			return status.Errorf(codes.InvalidArgument, "blob %s: more bytes than its size", d)
		}
		last := off+int64(n) == d.SizeBytes()
		if rerr == io.EOF && !last {
			return status.Errorf(codes.InvalidArgument, "blob %s: got %d bytes, digest says %d", d, off+int64(n), d.SizeBytes())
		}
		if n == 0 && !last {
			continue
		}
		if stream == nil {
			var err error
			if stream, err = s.bs.Write(ctx); err != nil {
				return fmt.Errorf("remote ByteStream.Write %s: %w", d, err)
			}
		}
		req := &bytestream.WriteRequest{WriteOffset: off, Data: buf[:n], FinishWrite: last}
		if off == 0 {
			req.ResourceName = name
		}
		if err := stream.Send(req); err != nil {
			// io.EOF: the server ended the stream (blob already present,
			// or an error); CloseAndRecv says which.
			break
		}
		off += int64(n)
		if last {
			break
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return fmt.Errorf("remote ByteStream.Write %s: %w", d, err)
	}
	if resp.CommittedSize != d.SizeBytes() && resp.CommittedSize != -1 {
		return status.Errorf(codes.DataLoss, "remote committed %d bytes of %s", resp.CommittedSize, d)
	}
	return nil
}
