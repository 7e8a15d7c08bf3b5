// Package s3store keeps Paddock's CAS and action cache in an S3-compatible
// object store (Amazon S3, MinIO, Ceph RGW, SeaweedFS, GCS's S3 API),
// through github.com/minio/minio-go.
//
// Lifecycle: cmd builds one Client from the config (New, then CheckBucket
// once at start), and hands it to NewBlobStore and NewActionCache; both
// are safe for concurrent use and hold no state of their own besides the
// Client. Object keys are laid out in keys.go.
//
// The store keeps the storage.BlobStore guarantees over a bucket that
// other programs can write to:
//   - Put never makes wrong bytes visible. Small blobs are read and
//     verified in memory before one PUT; larger ones stream through a
//     multipart upload whose parts stay invisible until the hash and size
//     have been checked, and which is aborted otherwise.
//   - Get verifies a whole read as it streams and holds back the last
//     bytes of a blob that does not match its digest: the reader then
//     returns DATA_LOSS, and the object is removed so that the next
//     upload replaces it.
//
// Nothing holds a blob whole in memory past 1 MiB: uploads stream part by
// part straight from the caller's reader, and reads stream the object's
// body (from an offset with a ranged GET).
package s3store

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Limits of a multipart upload's parts (S3's own: every part but the last
// is at least 5 MiB, none is over 5 GiB).
const (
	MinPartSize     = 5 << 20
	MaxPartSize     = 5 << 30
	DefaultPartSize = 16 << 20
	// DefaultMaxConcurrentRequests bounds the HEAD requests of
	// FindMissing in flight at once, over all callers.
	DefaultMaxConcurrentRequests = 32
	// defaultMaxRetries is how often the S3 client tries a request that
	// can be replayed. Low: a CAS call should fail fast with UNAVAILABLE
	// and let the REv2 client's own retry policy decide.
	defaultMaxRetries = 3
)

// Options configures a Client.
type Options struct {
	// Endpoint is the S3 API's host:port, without a scheme.
	Endpoint string
	// TLS speaks HTTPS to Endpoint.
	TLS bool
	// Region of the bucket; "us-east-1" if empty (what most S3-compatible
	// stores accept). Setting it saves a bucket-location request.
	Region string
	// Bucket holds the objects; it must exist.
	Bucket string
	// Prefix is put in front of every key (NormalizePrefix), so that
	// several farms or stores can share a bucket.
	Prefix string
	// AccessKeyID and SecretAccessKey sign requests. Both empty: the
	// credentials come from the environment (AWS_ACCESS_KEY_ID ...,
	// MINIO_ACCESS_KEY ...) or the machine's IAM role, else none.
	AccessKeyID, SecretAccessKey string
	// MaxConcurrentRequests bounds the HEADs of FindMissing in flight at
	// once, shared by all callers. Default DefaultMaxConcurrentRequests.
	MaxConcurrentRequests int
	// PartSize is the size of a multipart upload's parts, between
	// MinPartSize and MaxPartSize. Default DefaultPartSize.
	PartSize int64
	// Logger receives reports of corrupt objects; nil discards them.
	Logger *slog.Logger
}

// Client is a bucket and key prefix on an S3 endpoint, shared by the blob
// store and the action cache built on it.
type Client struct {
	core     *minio.Core
	bucket   string
	prefix   string
	partSize int64
	heads    chan struct{} // a slot per HEAD request in flight
	log      *slog.Logger
}

// New checks opts and returns a Client. It does not contact the endpoint;
// CheckBucket does.
func New(opts Options) (*Client, error) {
	if opts.Endpoint == "" || opts.Bucket == "" {
		return nil, fmt.Errorf("s3: endpoint and bucket must be set")
	}
	prefix, err := NormalizePrefix(opts.Prefix)
	if err != nil {
		return nil, fmt.Errorf("s3: %w", err)
	}
	if opts.PartSize == 0 {
		opts.PartSize = DefaultPartSize
	}
	if opts.PartSize < MinPartSize || opts.PartSize > MaxPartSize {
		return nil, fmt.Errorf("s3: part size %d is outside [%d, %d]", opts.PartSize, MinPartSize, int64(MaxPartSize))
	}
	if opts.MaxConcurrentRequests <= 0 {
		opts.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if opts.Region == "" {
		opts.Region = "us-east-1"
	}
	if (opts.AccessKeyID == "") != (opts.SecretAccessKey == "") {
		return nil, fmt.Errorf("s3: access key id and secret access key must be set together")
	}
	creds := credentials.NewStaticV4(opts.AccessKeyID, opts.SecretAccessKey, "")
	if opts.AccessKeyID == "" {
		creds = credentials.NewChainCredentials([]credentials.Provider{
			&credentials.EnvAWS{}, &credentials.EnvMinio{}, &credentials.IAM{},
		})
	}
	core, err := minio.NewCore(opts.Endpoint, &minio.Options{
		Creds: creds, Secure: opts.TLS, Region: opts.Region, MaxRetries: defaultMaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: endpoint %q: %w", opts.Endpoint, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Client{core: core, bucket: opts.Bucket, prefix: prefix, partSize: opts.PartSize,
		heads: make(chan struct{}, opts.MaxConcurrentRequests), log: log}, nil
}

// CheckBucket makes sure the bucket exists and the credentials may see it,
// so that a wrong config fails at start with a clear message instead of on
// the first build.
func (c *Client) CheckBucket(ctx context.Context) error {
	ok, err := c.core.BucketExists(ctx, c.bucket)
	if err != nil {
		return statusError(fmt.Sprintf("s3: bucket %q", c.bucket), err)
	}
	if !ok {
		return status.Errorf(codes.FailedPrecondition, "s3: bucket %q does not exist", c.bucket)
	}
	return nil
}

// acquire takes a HEAD slot, or fails when ctx ends first.
func (c *Client) acquire(ctx context.Context) error {
	select {
	case c.heads <- struct{}{}:
		return nil
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
}

func (c *Client) release() { <-c.heads }

// stat returns the size and ETag of the object at key.
func (c *Client) stat(ctx context.Context, key string) (minio.ObjectInfo, error) {
	return c.core.StatObject(ctx, c.bucket, key, minio.StatObjectOptions{})
}

// removeIfUnchanged removes the object at key if it still has etag: a
// corrupt object is removed, but not a good copy that a concurrent upload
// put in its place since it was read. It runs after the caller's context
// may have ended (a reader is closed early), so it has its own deadline.
func (c *Client) removeIfUnchanged(key, etag string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := c.stat(ctx, key)
	if err != nil || (etag != "" && info.ETag != etag) {
		return
	}
	if err := c.core.RemoveObject(ctx, c.bucket, key, minio.RemoveObjectOptions{}); err != nil {
		c.log.Warn("s3: could not remove corrupt object", "key", key, "err", err)
	}
}
