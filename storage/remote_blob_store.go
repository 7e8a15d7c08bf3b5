package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sync/atomic"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/hops"
)

// RemoteOptions configures the remote backends.
type RemoteOptions struct {
	// InstanceName is used for every CAS request to the remote endpoint,
	// unless ForwardInstance.
	InstanceName string
	// ForwardInstance sends each call's instance name (WithInstance) and
	// caller's tenant (forwardingConn) instead: a Paddock storage then
	// serves the instance's partition and counts the tenant's shares.
	// Workers and schedulers set it; a storage in front of another CAS does not.
	ForwardInstance bool
	// MaxBatchBytes, when set, bounds a batch request (and the reply it
	// asks for) below what the remote advertises, in bytes of the whole
	// message: blobs, digests and framing. It is also the bound while the
	// remote's limit is not known yet. Default: the remote's limit alone
	// (batchLimit), and until it is known every blob goes by ByteStream,
	// which has no size limit.
	MaxBatchBytes int64
}

// RemoteBlobStore is a BlobStore over another REv2 endpoint's CAS and
// ByteStream services, so that workers and schedulers on other machines,
// or operators with an existing cache cluster, can use it. Small blobs move
// with the batch RPCs, large ones with ByteStream; what is small depends on
// the remote's max_batch_total_size_bytes, asked on the first call that
// needs it (batchLimit), since a remote refuses a batch over its limit with
// INVALID_ARGUMENT, which clients do not retry.
type RemoteBlobStore struct {
	cas  repb.ContentAddressableStorageClient
	bs   bytestream.ByteStreamClient
	caps repb.CapabilitiesClient
	opts RemoteOptions
	// limit is the largest batch message to send or ask for, once learned
	// from the remote (batchLimit); limitUnknown until then. It is read
	// and set atomically: concurrent first calls may each ask the remote,
	// and their answers agree.
	limit atomic.Int64
}

// findMissingChunk bounds the digests of one FindMissingBlobs request.
const findMissingChunk = 10000

// NewRemoteBlobStore returns a BlobStore that talks to conn. It makes no
// call: a remote that is down when its front starts is asked for its
// limits once it answers.
func NewRemoteBlobStore(conn grpc.ClientConnInterface, opts RemoteOptions) *RemoteBlobStore {
	conn = hops.Conn(forwardingConn(conn, opts.ForwardInstance))
	s := &RemoteBlobStore{
		cas:  repb.NewContentAddressableStorageClient(conn),
		bs:   bytestream.NewByteStreamClient(conn),
		caps: repb.NewCapabilitiesClient(conn),
		opts: opts,
	}
	s.limit.Store(limitUnknown)
	return s
}

// FindMissing implements BlobStore.
func (s *RemoteBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	byProto := map[digest.Digest]bool{}
	var missing []digest.Digest
	for start := 0; start < len(ds); start += findMissingChunk {
		chunk := ds[start:min(len(ds), start+findMissingChunk)]
		// One request per digest function, as the RPC carries one.
		for fn, group := range groupByFunction(chunk) {
			req := &repb.FindMissingBlobsRequest{InstanceName: s.instance(ctx), DigestFunction: fn}
			for _, d := range group {
				req.BlobDigests = append(req.BlobDigests, d.Proto())
			}
			resp, err := s.cas.FindMissingBlobs(ctx, req)
			if err != nil {
				return nil, fmt.Errorf("remote FindMissingBlobs: %w", err)
			}
			for _, pd := range resp.MissingBlobDigests {
				d, err := digest.New(fn, pd.Hash, pd.SizeBytes)
				if err != nil {
					return nil, remoteAnsweredBadDigest("FindMissingBlobs", err)
				}
				byProto[d] = true
			}
		}
	}
	for _, d := range ds {
		if byProto[d] {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// Get implements BlobStore. Whole reads are verified against d.
func (s *RemoteBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if err := CheckOffset(d, offset); err != nil {
		return nil, err
	}
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	limit, err := s.batchLimit(ctx)
	if err != nil {
		return nil, err
	}
	if !fitsBatch(d, s.instance(ctx), limit) {
		return s.readStream(ctx, d, offset)
	}
	resp, err := s.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{
		InstanceName: s.instance(ctx), Digests: []*repb.Digest{d.Proto()}, DigestFunction: d.Function(),
	}, replyCap(d.SizeBytes(), 1))
	if err != nil {
		return nil, fmt.Errorf("remote BatchReadBlobs %s: %w", d, overReplyCap("BatchReadBlobs", err))
	}
	if len(resp.Responses) != 1 {
		return nil, status.Errorf(codes.Internal, "remote BatchReadBlobs answered %d responses for 1 digest", len(resp.Responses))
	}
	r := resp.Responses[0]
	if err := status.FromProto(r.Status).Err(); err != nil {
		return nil, err
	}
	if got := digest.FromBytes(d.Function(), r.Data); got != d {
		return nil, status.Errorf(codes.DataLoss, "remote returned bytes hashing to %s for %s", got, d)
	}
	return io.NopCloser(bytes.NewReader(r.Data[offset:])), nil
}

// readStream reads d with ByteStream, served from offset on. The remote
// is asked for the whole blob, even for a resumed read, and every byte is
// hashed through digest.VerifyingReader, the rule of the disk and S3
// stores: the Read that reaches the end checks length and hash before it
// returns the last bytes, so a remote's corrupt blob is never passed on
// whole (a front's ByteStream Read of a blob of whole chunks sent every
// byte and only then DATA_LOSS), and no part of one past the offset is
// served as if it were sound. A resumed read costs the remote the bytes
// before its offset again.
func (s *RemoteBlobStore) readStream(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.bs.Read(ctx, &bytestream.ReadRequest{
		ResourceName: digest.ResourceName{InstanceName: s.instance(ctx), Digest: d}.String(),
	}, replyCap(d.SizeBytes(), 1)) // each message at most the whole blob
	if err != nil {
		cancel()
		return nil, fmt.Errorf("remote ByteStream.Read %s: %w", d, err)
	}
	// Read the first message now so that NOT_FOUND surfaces from Get.
	first, err := stream.Recv()
	if err != nil && err != io.EOF {
		cancel()
		return nil, overReplyCap("ByteStream.Read", err)
	}
	src := &streamSource{stream: stream, cancel: cancel, eof: first == nil}
	if first != nil {
		src.buf = first.Data
	}
	return digest.NewVerifyingReader(src, d, offset, digest.VerifyChecks{
		Bad: func() error {
			return status.Errorf(codes.DataLoss, "remote returned bytes that do not match %s", d)
		},
		Short: func(missing int64, err error) error {
			if err == io.EOF {
				return status.Errorf(codes.DataLoss, "remote stream of %s ended %d bytes short", d, missing)
			}
			return err
		},
		// A stream that goes on past the size is as bad as other bytes.
		Trailing: true,
	}), nil
}

// streamSource adapts a ByteStream read to io.ReadCloser, unchecked: what
// it yields is checked by the VerifyingReader around it.
type streamSource struct {
	stream bytestream.ByteStream_ReadClient
	cancel context.CancelFunc
	buf    []byte
	eof    bool
}

func (r *streamSource) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		msg, err := r.stream.Recv()
		if err == io.EOF {
			r.eof = true
			continue
		}
		if err != nil {
			return 0, overReplyCap("ByteStream.Read", err)
		}
		r.buf = msg.Data
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Close ends the call: a reader closed early aborts the remote read.
func (r *streamSource) Close() error {
	r.cancel()
	return nil
}

// MaxBatchBytes implements Batcher: the remote's limit once known, else
// the configured bound (0: callers move blobs one by one). GetMany and
// PutMany split what does not fit one batch in any case.
func (s *RemoteBlobStore) MaxBatchBytes() int64 {
	if l := s.limit.Load(); l != limitUnknown {
		return l
	}
	return s.fallbackLimit()
}

// GetMany implements Batcher with BatchReadBlobs: one request per digest
// function and per batch that fits the remote's limit, and ByteStream for
// a blob too large for any batch.
func (s *RemoteBlobStore) GetMany(ctx context.Context, ds []digest.Digest) (map[digest.Digest][]byte, error) {
	limit, err := s.batchLimit(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[digest.Digest][]byte, len(ds))
	for fn, group := range groupByFunction(ds) {
		batches, alone := splitBatches(group, s.instance(ctx), limit)
		for _, batch := range batches {
			if err := s.readBatch(ctx, fn, batch, out); err != nil {
				return nil, err
			}
		}
		for _, d := range alone {
			data, err := s.readWhole(ctx, d)
			if status.Code(err) == codes.NotFound {
				continue
			}
			if err != nil {
				return nil, err
			}
			out[d] = data
		}
	}
	return out, nil
}

// readWhole reads all of d with ByteStream; the reader checks its length
// and hash before it reports the end.
func (s *RemoteBlobStore) readWhole(ctx context.Context, d digest.Digest) ([]byte, error) {
	if d.IsEmpty() {
		return []byte{}, nil
	}
	r, err := s.readStream(ctx, d, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

// readBatch reads the blobs ds of function fn into out with one
// BatchReadBlobs; missing ones are left out.
func (s *RemoteBlobStore) readBatch(ctx context.Context, fn digest.Function, ds []digest.Digest, out map[digest.Digest][]byte) error {
	req := &repb.BatchReadBlobsRequest{InstanceName: s.instance(ctx), DigestFunction: fn}
	for _, d := range ds {
		req.Digests = append(req.Digests, d.Proto())
	}
	resp, err := s.cas.BatchReadBlobs(ctx, req, batchReplyCap(ds))
	if err != nil {
		return fmt.Errorf("remote BatchReadBlobs of %d blobs: %w", len(ds), overReplyCap("BatchReadBlobs", err))
	}
	for _, r := range resp.Responses {
		if status.FromProto(r.Status).Code() == codes.NotFound {
			continue
		}
		if err := status.FromProto(r.Status).Err(); err != nil {
			return fmt.Errorf("remote BatchReadBlobs %s/%d: %w", r.Digest.GetHash(), r.Digest.GetSizeBytes(), err)
		}
		d, err := digest.FromProto(fn, r.Digest, "remote BatchReadBlobs response")
		if err != nil {
			return remoteAnsweredBadDigest("BatchReadBlobs", err)
		}
		if got := digest.FromBytes(fn, r.Data); got != d {
			return status.Errorf(codes.DataLoss, "remote returned bytes hashing to %s for %s", got, d)
		}
		out[d] = r.Data
	}
	return nil
}

// PutMany implements Batcher with BatchUpdateBlobs: one request per
// digest function and per batch that fits the remote's limit, and
// ByteStream for a blob too large for any batch.
func (s *RemoteBlobStore) PutMany(ctx context.Context, blobs map[digest.Digest][]byte) error {
	for d, data := range blobs {
		if got := digest.FromBytes(d.Function(), data); got != d {
			return status.Errorf(codes.InvalidArgument, "data hash to %s, not %s", got, d)
		}
	}
	limit, err := s.batchLimit(ctx)
	if err != nil {
		return err
	}
	ds := make([]digest.Digest, 0, len(blobs))
	for d := range blobs {
		ds = append(ds, d)
	}
	for fn, group := range groupByFunction(ds) {
		batches, alone := splitBatches(group, s.instance(ctx), limit)
		for _, batch := range batches {
			if err := s.updateBatch(ctx, fn, batch, blobs); err != nil {
				return err
			}
		}
		for _, d := range alone {
			if err := s.Put(ctx, d, bytes.NewReader(blobs[d])); err != nil {
				return err
			}
		}
	}
	return nil
}

// updateBatch stores the blobs ds of function fn, their bytes in blobs,
// with one BatchUpdateBlobs.
func (s *RemoteBlobStore) updateBatch(ctx context.Context, fn digest.Function, ds []digest.Digest, blobs map[digest.Digest][]byte) error {
	req := &repb.BatchUpdateBlobsRequest{InstanceName: s.instance(ctx), DigestFunction: fn}
	for _, d := range ds {
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: d.Proto(), Data: blobs[d]})
	}
	resp, err := s.cas.BatchUpdateBlobs(ctx, req)
	if err != nil {
		return fmt.Errorf("remote BatchUpdateBlobs of %d blobs: %w", len(req.Requests), err)
	}
	for _, r := range resp.Responses {
		if err := status.FromProto(r.Status).Err(); err != nil {
			return fmt.Errorf("remote BatchUpdateBlobs %s/%d: %w", r.Digest.GetHash(), r.Digest.GetSizeBytes(), err)
		}
	}
	return nil
}

// Put implements BlobStore.
func (s *RemoteBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if d.IsEmpty() {
		return nil
	}
	limit, err := s.batchLimit(ctx)
	if err != nil {
		return err
	}
	if !fitsBatch(d, s.instance(ctx), limit) {
		return s.writeStream(withWriteSource(ctx, d, r), d, r)
	}
	data, err := io.ReadAll(io.LimitReader(r, d.SizeBytes()+1))
	if err != nil {
		return err
	}
	if got := digest.FromBytes(d.Function(), data); got != d {
		return status.Errorf(codes.InvalidArgument, "data hash to %s, not %s", got, d)
	}
	return s.updateBatch(ctx, d.Function(), []digest.Digest{d}, map[digest.Digest][]byte{d: data})
}

// writeSourceKey is the context key of WriteSource.
type writeSourceKey struct{}

// withWriteSource is ctx, carrying the bytes of d for WriteSource when r
// can give them again from where it stands: it reads at an offset
// (io.ReaderAt, so a second read moves nothing under writeStream) and
// tells its position (io.Seeker), as a file, a section of one and a
// bytes.Reader do. writeStream itself reads r once and keeps nothing.
func withWriteSource(ctx context.Context, d digest.Digest, r io.Reader) context.Context {
	ra, ok := r.(interface {
		io.ReaderAt
		io.Seeker
	})
	if !ok {
		return ctx
	}
	pos, err := ra.Seek(0, io.SeekCurrent)
	if err != nil {
		return ctx
	}
	return context.WithValue(ctx, writeSourceKey{}, io.NewSectionReader(ra, pos, d.SizeBytes()))
}

// WriteSource returns the bytes of the blob that the ByteStream Write
// made with ctx uploads, when the reader given to Put can give them
// again (withWriteSource), read with ReadAt only. It is the seam of a
// client interceptor that writes a Write broken part way again from its
// first byte (a worker's, through a storage outage): only Put sees the
// reader, and the messages the interceptor sees are built in a buffer
// that writeStream reuses.
func WriteSource(ctx context.Context) (*io.SectionReader, bool) {
	src, ok := ctx.Value(writeSourceKey{}).(*io.SectionReader)
	return src, ok
}

var (
	_ BlobStore = (*RemoteBlobStore)(nil)
	_ Batcher   = (*RemoteBlobStore)(nil)
)

// instance is the instance name of ctx's calls (WithInstance), else the
// configured one.
func (s *RemoteBlobStore) instance(ctx context.Context) string {
	if i, ok := InstanceFrom(ctx); ok && s.opts.ForwardInstance {
		return i
	}
	return s.opts.InstanceName
}

// remoteAnsweredBadDigest is the error of a remote's answer naming a
// malformed digest: INTERNAL, the remote's fault, where the digest
// check's own INVALID_ARGUMENT told the client its valid request was bad,
// and Bazel fails a build on that without retrying.
func remoteAnsweredBadDigest(call string, err error) error {
	return status.Errorf(codes.Internal, "remote %s answered a bad digest: %s", call, status.Convert(err).Message())
}
