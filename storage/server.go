package storage

import (
	"context"
	"log/slog"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc"
)

// ServerOptions configures the storage services. Zero values take the
// defaults named on each field.
type ServerOptions struct {
	CAS BlobStore
	AC  ActionCache
	// MaxBatchTotalSizeBytes is advertised in Capabilities and enforced on
	// BatchUpdateBlobs and BatchReadBlobs. Default 4 MiB; the gRPC server's
	// MaxRecvMsgSize must leave room for it (see GRPCServerOptions).
	MaxBatchTotalSizeBytes int64
	// MaxInlineBytes bounds what GetActionResult inlines (stdout, stderr and
	// output files together). Default 1 MiB.
	MaxInlineBytes int64
	// UploadIdleTimeout is how long an interrupted ByteStream upload is kept
	// for the client to resume it. Default 1 minute.
	UploadIdleTimeout time.Duration
	// MaxOpenStreams bounds the ByteStream reads and uploads (parked ones
	// included) in progress at once; past it the oldest parked upload is
	// dropped, or the new stream waits for a slot, in arrival order, and
	// is refused with RESOURCE_EXHAUSTED if none frees within a few
	// seconds. Default a quarter of the process's open-file limit
	// (stream_slots.go).
	MaxOpenStreams int
	// MaxOpenStreamsPerTenant bounds the slots of MaxOpenStreams that one
	// tenant of the auth policy may hold; past it, its own oldest parked
	// upload is dropped, or its new stream waits for one of its own slots,
	// then is refused. Default half of
	// MaxOpenStreams (at least 1). Callers without a tenant count only
	// against MaxOpenStreams.
	MaxOpenStreamsPerTenant int
	// MaxCASBlobBytes, when set, is the largest blob the CAS holds: it is
	// advertised in Capabilities (max_cas_blob_size_bytes), and a
	// ByteStream upload of a larger blob is INVALID_ARGUMENT at its first
	// message, as the spec asks, not RESOURCE_EXHAUSTED once its bytes
	// have come (DiskMaxBlobBytes for a disk CAS; 0 when unknown).
	MaxCASBlobBytes int64
	// Execution, when set, is advertised in Capabilities (the scheduler
	// shares this endpoint in `paddock up`).
	Execution *repb.ExecutionCapabilities
	Logger    *slog.Logger
	// SkipCompletenessChecks serves and accepts action results without
	// checking that the Action and the blobs they name are in this CAS.
	// For a storage node behind a sharded front only: its CAS holds only
	// its share of the blobs, and the front checks results against the
	// whole sharded CAS. Results are still validated.
	SkipCompletenessChecks bool
}

// The defaults of ServerOptions, written once: NewServer fills zero fields
// with them, and the storage role's config (configs.DefaultStorage) starts
// from them.
const (
	// DefaultMaxBatchTotalSizeBytes is 2 MiB, not gRPC's usual 4: the
	// receive limit is twice it plus 1 MiB (maxRecvBytes), and a request
	// that arrives slowly holds that much until it is whole, so 2 MiB
	// keeps a call's memory where it was (5 MiB) while a batch of small
	// blobs within the bound still fits.
	DefaultMaxBatchTotalSizeBytes = 2 << 20
	DefaultMaxInlineBytes         = 1 << 20
	DefaultUploadIdleTimeout      = time.Minute
)

const (
	// grpcOverheadBytes is what a batch request may carry beyond its blob
	// bytes: digests, framing and field tags.
	grpcOverheadBytes = 1 << 20
	// inlineFieldBytes is what one inlined field adds to a reply beside
	// its bytes (tag and length), and inlineSlackBytes what GetActionResult
	// keeps free under the send limit for the gRPC framing.
	inlineFieldBytes = 16
	inlineSlackBytes = 4 << 10
	// maxCommandBytes bounds the Action and Command UpdateActionResult
	// reads to learn the working directory.
	maxCommandBytes = 16 << 20
	// streamChunkBytes is the size of ByteStream read responses and of the
	// messages GetTree and remote clients send.
	streamChunkBytes = 1 << 20
)

// Server holds the four storage services. Register them with Register.
type Server struct {
	opts ServerOptions
	cas  *casServer
	bs   *byteStreamServer
	ac   *actionCacheServer
	caps *capabilitiesServer
}

// NewServer validates opts and builds the services.
func NewServer(opts ServerOptions) *Server {
	if opts.MaxBatchTotalSizeBytes <= 0 {
		opts.MaxBatchTotalSizeBytes = DefaultMaxBatchTotalSizeBytes
	}
	if opts.MaxInlineBytes <= 0 {
		opts.MaxInlineBytes = DefaultMaxInlineBytes
	}
	if opts.UploadIdleTimeout <= 0 {
		opts.UploadIdleTimeout = DefaultUploadIdleTimeout
	}
	if opts.MaxOpenStreams <= 0 {
		opts.MaxOpenStreams = defaultMaxOpenStreams()
	}
	if opts.MaxOpenStreamsPerTenant <= 0 {
		opts.MaxOpenStreamsPerTenant = max(opts.MaxOpenStreams/2, 1)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts: opts,
		cas:  newCASServer(&opts),
		bs:   newByteStreamServer(&opts),
		ac:   &actionCacheServer{opts: &opts},
		caps: &capabilitiesServer{opts: &opts},
	}
	// A BatchUpdateBlobs that finds the CAS full has the parked uploads
	// give way, as an upload does (parked_uploads.go).
	s.cas.giveWay = func(ctx context.Context) bool { return s.bs.giveWay(ctx, nil) }
	return s
}

// Register adds Capabilities, ContentAddressableStorage, ByteStream and
// ActionCache to s.
func (s *Server) Register(g *grpc.Server) {
	repb.RegisterCapabilitiesServer(g, s.caps)
	repb.RegisterContentAddressableStorageServer(g, s.cas)
	repb.RegisterActionCacheServer(g, s.ac)
	bytestream.RegisterByteStreamServer(g, s.bs)
}

// GRPCServerOptions returns the grpc.ServerOptions the storage services need:
// a receive limit that admits a full batch plus overhead (larger messages
// are refused by gRPC with RESOURCE_EXHAUSTED before they reach a handler).
func (s *Server) GRPCServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(int(s.opts.maxRecvBytes())),
		grpc.MaxSendMsgSize(int(s.opts.maxSendBytes())),
	}
}

// maxRecvBytes is the largest request the storage services take: a full
// batch of blobs with its digests and framing. A batch entry's digest and
// framing take about 80 bytes (SHA-256), so a client that counts only
// blob bytes against max_batch_total_size_bytes, as the spec words it,
// sends up to twice that in a batch of 100-byte blobs: with room for just
// 1 MiB beside it, such a batch within the advertised bound was refused
// by gRPC (RESOURCE_EXHAUSTED, which clients retry). Twice the bound
// admits batches of blobs of 80 bytes or more on average.
func (o *ServerOptions) maxRecvBytes() int64 {
	return 2*o.MaxBatchTotalSizeBytes + grpcOverheadBytes
}

// maxSendBytes is the largest reply they send. A BatchReadBlobs reply
// repeats the request's digests (up to a whole request) beside up to a
// full batch of blobs and one status per digest, so a request within the
// advertised max_batch_total_size_bytes must not be answered with a reply
// that gRPC refuses to send: four requests' worth covers the worst case
// (batchReadBound checks it).
func (o *ServerOptions) maxSendBytes() int64 { return 4 * o.maxRecvBytes() }

// Close aborts uploads kept for resumption.
func (s *Server) Close() { s.bs.close() }
