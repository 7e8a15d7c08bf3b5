package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/internal/grpclimit"
)

// casServer implements ContentAddressableStorage over a BlobStore.
type casServer struct {
	repb.UnimplementedContentAddressableStorageServer
	opts *ServerOptions
	// zstd codecs are expensive to build and safe to share for whole-buffer
	// calls (EncodeAll/DecodeAll); ByteStream builds its own per stream.
	zenc *zstd.Encoder
	zdec *zstd.Decoder
	// treeWalks holds a token per GetTree walk walking (TreeWalkSlots),
	// treeCalls a slot per GetTree call in progress (treeCallSlots),
	// walking or sending.
	treeWalks chan struct{}
	treeCalls *TenantSlots
	// pageWaitBound, when set (by tests), replaces maxTreePageWait.
	pageWaitBound atomic.Int64
	// giveWay frees room for a Put that finds the CAS full
	// (byteStreamServer.giveWay); set by NewServer.
	giveWay func(context.Context) bool
}

func newCASServer(opts *ServerOptions) *casServer {
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	// An entry decodes into a buffer of its digest's size and stops past
	// it (WithDecodeAllCapLimit; a bomb costs that, and a block more).
	// DecodeAll keeps no window beside what it decodes, so a frame may
	// declare any window an upload may (maxUploadWindow): the decoder's
	// max memory, which is also its window bound, had been the batch's
	// size, and a 3,000-byte blob that zstd -19 or klauspost's streaming
	// writer compressed (an 8 MiB window) was refused (outside probe).
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecodeAllCapLimit(true),
		zstd.WithDecoderMaxMemory(max(uint64(opts.MaxBatchTotalSizeBytes), maxUploadWindow)), zstd.WithDecoderMaxWindow(maxUploadWindow))
	return &casServer{opts: opts, zenc: enc, zdec: dec, treeWalks: make(chan struct{}, TreeWalkSlots()),
		treeCalls: NewTenantSlots(treeCallSlots())}
}

// treePageWait is how long a GetTree page waits for its client:
// maxTreePageWait, unless a test set pageWaitBound.
func (s *casServer) treePageWait() time.Duration {
	if d := time.Duration(s.pageWaitBound.Load()); d > 0 {
		return d
	}
	return maxTreePageWait
}

// batchParallelism is how many blobs of one batch are stored or read at once.
const batchParallelism = 8

func (s *casServer) FindMissingBlobs(ctx context.Context, req *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	ctx, fn, err := requestScope(ctx, req.InstanceName, req.DigestFunction)
	if err != nil {
		return nil, err
	}
	// REv2: servers MUST behave as though empty blobs are always
	// available. They are never asked of the store, which behind a front
	// may be a shard that is down.
	ds := make([]digest.Digest, 0, len(req.BlobDigests))
	for i, pd := range req.BlobDigests {
		d, err := digest.FromProto(fn, pd, fmt.Sprintf("blob_digests[%d]", i))
		if err != nil {
			return nil, err
		}
		if !d.IsEmpty() {
			ds = append(ds, d)
		}
	}
	var missing []digest.Digest
	if len(ds) > 0 {
		// The store's error as it is: the client knows the call it made,
		// and through a storage front each hop had added the same
		// prefix ("find missing blobs: remote FindMissingBlobs: find
		// missing blobs: remote FindMissingBlobs: …").
		if missing, err = s.opts.CAS.FindMissing(ctx, ds); err != nil {
			return nil, err
		}
	}
	resp := &repb.FindMissingBlobsResponse{MissingBlobDigests: make([]*repb.Digest, len(missing))}
	for i, d := range missing {
		resp.MissingBlobDigests[i] = d.Proto()
	}
	return resp, nil
}

// BatchUpdateBlobs stores each valid entry under the request's instance,
// whose name must be one ByteStream can address (rev2.CheckInstanceName):
// blobs stored under any other could never be read back.
func (s *casServer) BatchUpdateBlobs(ctx context.Context, req *repb.BatchUpdateBlobsRequest) (*repb.BatchUpdateBlobsResponse, error) {
	ctx, fn, err := requestScope(ctx, req.InstanceName, req.DigestFunction)
	if err != nil {
		return nil, err
	}
	// The total counts each blob at its size, not its bytes on the wire:
	// a compressed entry is decoded to its digest's size, and counted at
	// its bytes alone, 141 bytes of zstd each decoding to 4 MiB of zeros
	// made one small request cost minutes of CPU and gigabytes. A size
	// past the bound on its own is that entry's error (updateOne).
	var total, reply int64
	for i, r := range req.Requests {
		size := r.GetDigest().GetSizeBytes()
		if size < 0 || size > s.opts.MaxBatchTotalSizeBytes {
			size = 0
		}
		total += max(int64(len(r.Data)), size)
		if total > s.opts.MaxBatchTotalSizeBytes {
			return nil, status.Errorf(codes.InvalidArgument, "requests: more than max_batch_total_size_bytes %d in total (at requests[%d]; a blob counts at its digest's size); use ByteStream for large blobs", s.opts.MaxBatchTotalSizeBytes, i)
		}
		if reply += int64(proto.Size(r.Digest)) + okEntryBytes; reply > clientRecvBytes {
			return nil, status.Errorf(codes.InvalidArgument, "requests: the reply to %d blobs would be over %d bytes, the most gRPC clients receive by default (at requests[%d]); send fewer blobs per batch", len(req.Requests), clientRecvBytes, i)
		}
	}
	resp := &repb.BatchUpdateBlobsResponse{Responses: make([]*repb.BatchUpdateBlobsResponse_Response, len(req.Requests))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchParallelism)
	for i, r := range req.Requests {
		resp.Responses[i] = &repb.BatchUpdateBlobsResponse_Response{Digest: r.Digest}
		g.Go(func() error {
			resp.Responses[i].Status = entryStatus(s.updateOne(gctx, fn, i, r), maxUpdateEntryMessage)
			return nil
		})
	}
	_ = g.Wait() // every task returns nil: each entry carries its own status
	if proto.Size(resp) > clientRecvBytes {
		// Many entries failed, each with its message: the codes alone fit.
		for _, r := range resp.Responses {
			if r.Status.GetCode() != 0 {
				r.Status.Message = ""
			}
		}
	}
	return resp, nil
}

// batchDecodeMemory is what decoding a compressed batch entry of a blob of
// size bytes may take: its buffer, and, when a bomb's last block goes past
// it, the larger one append moves it to (up to twice, and a block).
func batchDecodeMemory(size int64) int64 { return 3*size + 128<<10 }

// clientRecvBytes is the largest message gRPC clients receive unless told
// otherwise (grpc-go's and grpc-java's default). A BatchUpdateBlobs of
// tens of thousands of tiny blobs fits the server's receive limit, and its
// reply, a digest and a status for each, did not fit the client's: every
// blob was stored, and the client saw RESOURCE_EXHAUSTED.
const clientRecvBytes = 4 << 20

// okEntryBytes is what a BatchUpdateBlobs reply entry adds beside its
// digest when its status is OK: framing and an empty status.
const okEntryBytes = 8

func (s *casServer) updateOne(ctx context.Context, fn digest.Function, i int, r *repb.BatchUpdateBlobsRequest_Request) error {
	field := fmt.Sprintf("requests[%d].digest", i)
	d, err := digest.FromProto(fn, r.Digest, field)
	if err != nil {
		return err
	}
	// The size is the client's word, and a compressed entry's buffer is
	// sized by it: bounded here, a digest saying a terabyte is refused
	// instead of allocated.
	if d.SizeBytes() > s.opts.MaxBatchTotalSizeBytes {
		return status.Errorf(codes.InvalidArgument, "%s: size_bytes %d is more than max_batch_total_size_bytes %d; use ByteStream for large blobs", field, d.SizeBytes(), s.opts.MaxBatchTotalSizeBytes)
	}
	data := r.Data
	switch r.Compressor {
	case repb.Compressor_IDENTITY:
	case repb.Compressor_ZSTD:
		// The decoder stops past the digest's size (newCASServer), so a
		// small bomb costs that much memory at most, held in the codec
		// budget until the blob is stored: the buffer had been made at
		// once, and 512 requests of a 339-byte bomb claiming 2 MiB, all
		// waiting for one of the few decoders, took the storage to
		// 1.5 GB (outside probe).
		release, err := codecMemory.holdBytes(ctx, batchDecodeMemory(d.SizeBytes()))
		if err != nil {
			return err
		}
		defer release()
		data, err = s.zdec.DecodeAll(r.Data, make([]byte, 0, d.SizeBytes()))
		switch {
		case errors.Is(err, zstd.ErrDecoderSizeExceeded):
			return countMismatch(s.opts.CAS, status.Errorf(codes.InvalidArgument, "requests[%d].data: decompresses to more than %s says (%d bytes)", i, field, d.SizeBytes()))
		case errors.Is(err, zstd.ErrWindowSizeExceeded):
			return status.Errorf(codes.InvalidArgument, "requests[%d].data: the zstd frame's window is larger than %d MiB, the most this server decodes", i, maxUploadWindow>>20)
		case err != nil:
			return status.Errorf(codes.InvalidArgument, "requests[%d].data: not valid zstd: %v", i, err)
		}
	default:
		return status.Errorf(codes.InvalidArgument, "requests[%d].compressor: %s is not supported", i, r.Compressor)
	}
	if int64(len(data)) != d.SizeBytes() {
		return countMismatch(s.opts.CAS, status.Errorf(codes.InvalidArgument, "requests[%d].data: %d bytes, but %s says %d", i, len(data), field, d.SizeBytes()))
	}
	if got := digest.FromBytes(d.Function(), data); got != d {
		return countMismatch(s.opts.CAS, status.Errorf(codes.InvalidArgument, "requests[%d].data: hashes to %s, not %s", i, got.Hash(), d.Hash()))
	}
	if err := s.opts.CAS.Put(withGiveWay(ctx, s.giveWay), d, bytes.NewReader(data)); err != nil {
		return fmt.Errorf("BatchUpdateBlobs %s: %w", field, err)
	}
	return nil
}

// BatchReadBlobs reads each well-formed digest's blob. A malformed digest
// is an error of its own entry only (REv2: "every error on individual read
// will be returned in the corresponding digest status"); what concerns
// the request as a whole (instance name, digest function, the size of the
// reply) refuses the call.
func (s *casServer) BatchReadBlobs(ctx context.Context, req *repb.BatchReadBlobsRequest) (*repb.BatchReadBlobsResponse, error) {
	ctx, fn, err := requestScope(ctx, req.InstanceName, req.DigestFunction)
	if err != nil {
		return nil, err
	}
	ds, errs, total, err := s.checkBatchRead(fn, req.Digests)
	if err != nil {
		return nil, err
	}
	// The response keeps its blobs in memory until the client has read
	// it: it waits for room in the connection's send backlog first.
	if err := grpclimit.WaitToSend(ctx, total); err != nil {
		return nil, err
	}
	zstdOK := false
	for _, c := range req.AcceptableCompressors {
		zstdOK = zstdOK || c == repb.Compressor_ZSTD
	}
	resp := &repb.BatchReadBlobsResponse{Responses: make([]*repb.BatchReadBlobsResponse_Response, len(ds))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(batchParallelism)
	for i, d := range ds {
		out := &repb.BatchReadBlobsResponse_Response{Digest: req.Digests[i]}
		if out.Digest == nil {
			out.Digest = &repb.Digest{} // a reply entry always has one
		}
		resp.Responses[i] = out
		if errs[i] != nil {
			out.Status = statusProto(errs[i])
			continue
		}
		g.Go(func() error {
			data, err := GetBytes(gctx, s.opts.CAS, d, d.SizeBytes())
			if err != nil {
				out.Status = statusProto(unsentAsNotFound(err))
				return nil
			}
			out.Data = data
			// Compress only where it pays: small blobs cost more to
			// compress than they save on the wire.
			if zstdOK && len(data) >= 1024 {
				if c := s.zenc.EncodeAll(data, nil); len(c) < len(data)*9/10 {
					out.Data, out.Compressor = c, repb.Compressor_ZSTD
				}
			}
			out.Status = &rpcstatus.Status{}
			return nil
		})
	}
	_ = g.Wait() // every task returns nil: each entry carries its own status
	return resp, nil
}

// checkBatchRead parses the digests of a BatchReadBlobs request: errs[i]
// is digests[i]'s own INVALID_ARGUMENT, for its entry of the reply, and
// total the bytes of the blobs to read. The error is for the whole
// request: blobs over max_batch_total_size_bytes, or a reply over the
// server's message limit.
func (s *casServer) checkBatchRead(fn digest.Function, pds []*repb.Digest) (ds []digest.Digest, errs []error, total int64, err error) {
	ds = make([]digest.Digest, len(pds))
	errs = make([]error, len(pds))
	var reply int64
	for i, pd := range pds {
		ds[i], errs[i] = digest.FromProto(fn, pd, fmt.Sprintf("digests[%d]", i))
		// The reply repeats each digest beside its blob and status; it
		// must stay sendable (ServerOptions.maxSendBytes), or gRPC would
		// refuse it after every blob was read. A malformed digest is
		// echoed too, with no blob (its size is 0 here).
		if reply += int64(proto.Size(pd)) + ds[i].SizeBytes() + batchEntryBytes; reply > s.opts.maxSendBytes() {
			return nil, nil, 0, status.Errorf(codes.InvalidArgument, "digests: the reply to %d digests would be over the server's message limit of %d bytes (at digests[%d]); ask for fewer blobs per batch", len(pds), s.opts.maxSendBytes(), i)
		}
		// Compared before it is added: sizes near the largest int64 would
		// wrap the sum around, and the blobs before them, however many,
		// would all be read into memory.
		if ds[i].SizeBytes() > s.opts.MaxBatchTotalSizeBytes-total {
			return nil, nil, 0, status.Errorf(codes.InvalidArgument, "digests: more than max_batch_total_size_bytes %d in total (at digests[%d]); use ByteStream for large blobs", s.opts.MaxBatchTotalSizeBytes, i)
		}
		total += ds[i].SizeBytes()
	}
	return ds, errs, total, nil
}

// batchEntryBytes bounds what one entry of a batch reply adds beside its
// digest and blob: framing, compressor and a status of at most
// maxEntryMessage bytes.
const (
	maxEntryMessage = 120
	batchEntryBytes = maxEntryMessage + 16
	// maxUpdateEntryMessage bounds a BatchUpdateBlobs entry's message. Its
	// reply is measured whole once built (messages are dropped when it is
	// too large), so it need not be known ahead as a read's is: at 120
	// bytes a refusal's message ("BatchUpdateBlobs requests[i].digest:
	// blob HASH/SIZE not stored: the CAS's disk is full ...") lost its
	// reason, or its blob.
	maxUpdateEntryMessage = 1024
)

// statusProto turns an error into a google.rpc.Status for per-entry
// results: its code and message, cut to maxEntryMessage bytes so that a
// batch reply's size is known from its request (batchEntryBytes).
func statusProto(err error) *rpcstatus.Status { return entryStatus(err, maxEntryMessage) }

// entryStatus is statusProto with messages cut to limit bytes.
func entryStatus(err error, limit int) *rpcstatus.Status {
	if err == nil {
		return &rpcstatus.Status{}
	}
	st := grpcerr.Convert(err)
	msg := st.Message()
	if len(msg) > limit {
		msg = strings.ToValidUTF8(msg[:limit-3], "") + "..."
	}
	return &rpcstatus.Status{Code: int32(st.Code()), Message: msg}
}
