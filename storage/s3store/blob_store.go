package s3store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/minio/minio-go/v7"
	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// BlobStore is a storage.BlobStore in an S3 bucket: one object per blob
// (keys.go). See the package comment for what it guarantees.
type BlobStore struct {
	c *Client
}

// NewBlobStore returns the CAS kept by c.
func NewBlobStore(c *Client) *BlobStore { return &BlobStore{c: c} }

// FindMissing implements storage.BlobStore with one HEAD per distinct
// digest, at most MaxConcurrentRequests in flight (shared with other
// callers). An object of the wrong size counts as missing, so that the
// client uploads the blob again and replaces it.
func (s *BlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	present := make(map[digest.Digest]bool, len(ds))
	for _, d := range ds {
		present[d] = d.IsEmpty()
	}
	found := make(chan digest.Digest, len(present))
	g, gctx := errgroup.WithContext(ctx)
	for d, empty := range present {
		if empty {
			continue
		}
		if err := s.c.acquire(gctx); err != nil {
			break // the error that ended gctx is g.Wait's
		}
		g.Go(func() error {
			defer s.c.release()
			info, err := s.c.stat(gctx, blobKey(s.c.prefix, d))
			switch {
			case isNotFound(err):
				return nil
			case err != nil:
				return statusError(fmt.Sprintf("find blob %s", d), err)
			case info.Size == d.SizeBytes():
				found <- d
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, status.FromContextError(err).Err()
	}
	close(found)
	for d := range found {
		present[d] = true
	}
	var missing []digest.Digest
	for _, d := range ds {
		if !present[d] {
			missing = append(missing, d)
		}
	}
	return missing, nil
}

// Get implements storage.BlobStore. Every read that serves bytes is
// verified against d as it streams, one from a later offset too: it
// fetches the whole object and hashes the bytes before the offset without
// serving them.
func (s *BlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if err := storage.CheckOffset(d, offset); err != nil {
		return nil, err
	}
	if d.IsEmpty() {
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	key := blobKey(s.c.prefix, d)
	what := fmt.Sprintf("get blob %s", d)
	if offset == d.SizeBytes() { // S3 refuses a range that starts at the end
		info, err := s.c.stat(ctx, key)
		if err != nil {
			return nil, statusError(what, err)
		}
		if info.Size != d.SizeBytes() {
			return nil, s.corrupt(d, key, info.ETag, fmt.Sprintf("is %d bytes", info.Size))
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	// The whole object, even for a resumed read: the bytes before offset
	// are hashed too (digest.VerifyingReader), so that no part of a
	// corrupt object is served.
	body, info, _, err := s.c.core.GetObject(ctx, s.c.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return nil, statusError(what, err)
	}
	// A size the response does not state (-1) is left to the reader,
	// which finds a body too short or too long as it streams.
	if info.Size >= 0 && info.Size != d.SizeBytes() {
		body.Close()
		return nil, s.corrupt(d, key, info.ETag, fmt.Sprintf("is %d bytes", info.Size))
	}
	return digest.NewVerifyingReader(body, d, offset, digest.VerifyChecks{
		Bad: func() error { return s.corrupt(d, key, info.ETag, "does not match its digest") },
		// A body that ends early is a transport failure, not corruption.
		Short: func(missing int64, err error) error {
			if err == io.EOF {
				return status.Errorf(codes.Unavailable, "read blob %s from S3: the object's body ended %d bytes short", d, missing)
			}
			return statusError("read blob "+d.String()+" from S3", err)
		},
		// A body that goes on past the size is corrupt.
		Trailing: true,
	}), nil
}

// corrupt answers a read of d's object at key found bad (why) with
// DATA_LOSS, and removes the object if it still is bad when read again
// (stillBad), unless it has been replaced since. One bad read alone
// removed it: a byte flipped in transit, or a proxy's wrong
// Content-Length, deleted a sound 200 MB object.
func (s *BlobStore) corrupt(d digest.Digest, key, etag, why string) error {
	if !s.stillBad(d, key) {
		s.c.log.Warn("s3: a read of a blob was damaged, but the object read again is sound; kept", "digest", d.String(), "key", key, "why", why)
		return status.Errorf(codes.DataLoss, "blob %s %s as read from S3, but the object read again is sound: read it again", d, why)
	}
	s.c.log.Error("s3: corrupt blob removed", "digest", d.String(), "key", key, "why", why)
	s.c.removeIfUnchanged(key, etag)
	return status.Errorf(codes.DataLoss, "blob %s %s in S3 and has been removed; upload it again", d, why)
}

// stillBad reads d's object at key again, whole, and reports whether it
// does not match d: a size other than d's, or bytes that do not hash to
// it. A read that fails, or breaks off, tells nothing: not bad. It runs
// after the caller's context may have ended, so it has its own deadline.
func (s *BlobStore) stillBad(d digest.Digest, key string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), recheckTimeout)
	defer cancel()
	body, info, _, err := s.c.core.GetObject(ctx, s.c.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return false
	}
	if info.Size >= 0 && info.Size != d.SizeBytes() {
		body.Close()
		return true
	}
	bad := false
	var r io.ReadCloser = digest.NewVerifyingReader(body, d, 0, digest.VerifyChecks{
		Bad:      func() error { bad = true; return errRecheckFailed },
		Short:    func(int64, error) error { return errRecheckFailed },
		Trailing: true,
	})
	defer r.Close()
	_, _ = io.Copy(io.Discard, r) // bad says what it found
	return bad
}

// recheckTimeout bounds stillBad's read.
const recheckTimeout = 2 * time.Minute

var errRecheckFailed = errors.New("the object read again is not whole")

var _ storage.BlobStore = (*BlobStore)(nil)
