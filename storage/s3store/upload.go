package s3store

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"time"

	"github.com/minio/minio-go/v7"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// smallBlobBytes is the largest blob Put reads into memory, verifies, and
// sends in one PUT. Larger ones stream through a multipart upload, which
// costs two more requests but holds no part in memory.
const smallBlobBytes = 1 << 20

// Put implements storage.BlobStore. The bytes are checked against d
// before anything becomes visible (see the package comment).
func (s *BlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if d.SizeBytes() <= smallBlobBytes {
		return s.putSmall(ctx, d, r)
	}
	return s.putMultipart(ctx, d, r)
}

// putSmall reads the blob whole (at most smallBlobBytes), verifies it, and
// uploads it in one PUT.
func (s *BlobStore) putSmall(ctx context.Context, d digest.Digest, r io.Reader) error {
	hr := newHashingReader(r, d)
	data, err := io.ReadAll(io.LimitReader(hr, d.SizeBytes()+1))
	if err != nil {
		return fmt.Errorf("read blob %s: %w", d, err)
	}
	if err := hr.check(); err != nil {
		return err
	}
	if d.IsEmpty() {
		return nil
	}
	_, err = s.c.core.PutObject(ctx, s.c.bucket, blobKey(s.c.prefix, d), bytes.NewReader(data), d.SizeBytes(),
		"", "", minio.PutObjectOptions{ContentType: "application/octet-stream"})
	return statusError(fmt.Sprintf("put blob %s", d), err)
}

// putMultipart streams the blob through a multipart upload, part by part
// straight from r, and completes it only once every byte has been hashed
// and r has ended exactly at d's size. On any failure the upload is
// aborted, so its parts never become an object.
func (s *BlobStore) putMultipart(ctx context.Context, d digest.Digest, r io.Reader) (err error) {
	key := blobKey(s.c.prefix, d)
	what := fmt.Sprintf("put blob %s", d)
	uploadID, err := s.c.core.NewMultipartUpload(ctx, s.c.bucket, key, minio.PutObjectOptions{ContentType: "application/octet-stream"})
	if err != nil {
		return statusError(what, err)
	}
	defer func() {
		if err != nil {
			s.abort(key, uploadID)
		}
	}()
	hr := newHashingReader(r, d)
	var parts []minio.CompletePart
	for n, off := 1, int64(0); off < d.SizeBytes(); n++ {
		size := min(s.c.partSize, d.SizeBytes()-off)
		part, err := s.c.core.PutObjectPart(ctx, s.c.bucket, key, uploadID, n, io.LimitReader(hr, size), size,
			minio.PutObjectPartOptions{})
		if err != nil {
			if rerr := hr.failure(); rerr != nil { // the caller's reader failed or ran short
				return rerr
			}
			return statusError(fmt.Sprintf("%s: part %d", what, n), err)
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: part.ETag})
		off += size
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(hr, 1)); err != nil {
		return fmt.Errorf("read blob %s: %w", d, err)
	}
	if err := hr.check(); err != nil {
		return err
	}
	_, err = s.c.core.CompleteMultipartUpload(ctx, s.c.bucket, key, uploadID, parts, minio.PutObjectOptions{})
	return statusError(what, err)
}

// abort drops an unfinished upload's parts. It runs after the caller's
// context may have ended, so it has its own deadline. An upload left
// behind by a crash is for the bucket's lifecycle rule
// (AbortIncompleteMultipartUpload; docs/storage.md).
func (s *BlobStore) abort(key, uploadID string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.c.core.AbortMultipartUpload(ctx, s.c.bucket, key, uploadID); err != nil && !isNotFound(err) {
		s.c.log.Warn("s3: could not abort a failed upload", "key", key, "err", err)
	}
}

// hashingReader hashes and counts what the caller's reader yields, and
// remembers how it ended, so a failed part upload can be told apart from
// a reader that failed or ran short.
type hashingReader struct {
	r   io.Reader
	d   digest.Digest
	h   hash.Hash
	n   int64
	eof bool
	err error
}

func newHashingReader(r io.Reader, d digest.Digest) *hashingReader {
	return &hashingReader{r: r, d: d, h: d.NewHasher()}
}

func (h *hashingReader) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.h.Write(p[:n])
	h.n += int64(n)
	switch {
	case err == io.EOF:
		h.eof = true
	case err != nil:
		h.err = err
	}
	return n, err
}

// failure is the reader's own failure, if it had one: its error, or
// INVALID_ARGUMENT if it ended before d's size.
func (h *hashingReader) failure() error {
	switch {
	case h.err != nil:
		return fmt.Errorf("read blob %s: %w", h.d, h.err)
	case h.eof && h.n < h.d.SizeBytes():
		return h.check()
	}
	return nil
}

// check compares what was read with d: INVALID_ARGUMENT unless it was
// exactly d's bytes.
func (h *hashingReader) check() error {
	if h.n != h.d.SizeBytes() {
		return status.Errorf(codes.InvalidArgument, "blob %s: got %d bytes or more, digest says %d", h.d, h.n, h.d.SizeBytes())
	}
	if got := hex.EncodeToString(h.h.Sum(nil)); got != h.d.Hash() {
		return status.Errorf(codes.InvalidArgument, "blob %s: data hashes to %s", h.d, got)
	}
	return nil
}
