package compose

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// CachedBlobStore keeps a bounded local disk cache in front of a remote
// backend, so that hot blobs (a worker's inputs, next to it) are read
// from local disk. Reads fill the cache; writes go through to the backend
// and succeed only once the backend has the blob (the cache keeps a copy
// only then). The cache evicts least recently used blobs past its bound.
//
// FindMissing asks the backend, which decides what is stored (the cache
// answers for the blobs it holds only while the backend is down): the
// cache's blobs were in the backend when they were written or read, but a
// backend that evicts may have dropped one since. Answered from the cache
// first, such a blob was present to the front's clients, who uploaded it
// never again, and the backend's action cache refused every result naming
// it (FAILED_PRECONDITION) for as long as the cache kept it (outside
// probe). Size the backend to keep what caches in front of it hold.
type CachedBlobStore struct {
	cache   *storage.DiskBlobStore
	backend storage.BlobStore
	name    string
	fills   singleflight.Group
	log     *slog.Logger
}

// NewCachedBlobStore returns backend (called name in errors) behind cache.
func NewCachedBlobStore(cache *storage.DiskBlobStore, backend storage.BlobStore, name string, logger *slog.Logger) *CachedBlobStore {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &CachedBlobStore{cache: cache, backend: backend, name: name, log: logger}
}

// Cache returns the local disk cache, whose files a worker on this
// machine may hard-link (worker.LocalBlobs).
func (c *CachedBlobStore) Cache() *storage.DiskBlobStore { return c.cache }

// FindMissing implements storage.BlobStore.
func (c *CachedBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	missing, err := c.backend.FindMissing(ctx, ds)
	if err == nil || status.Code(err) != codes.Unavailable {
		return missing, backendError(c.name, err)
	}
	// The backend is down: the cache serves what it holds meanwhile.
	notCached, cerr := c.cache.FindMissing(ctx, ds)
	if cerr != nil || len(notCached) == 0 {
		return notCached, cerr
	}
	return nil, backendError(c.name, err)
}

// Get implements storage.BlobStore. A blob not cached is copied into the
// cache whole (once, however many read it at the same time), then served
// from there; one the cache cannot hold is served from the backend. A
// cached copy found corrupt before a byte of it was served is served from
// the backend instead (see cacheReader).
func (c *CachedBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, err := c.cache.Get(ctx, d, offset)
	if err == nil {
		return &cacheReader{c: c, ctx: ctx, d: d, offset: offset, r: r}, nil
	}
	if status.Code(err) != codes.NotFound {
		return nil, err
	}
	return c.getFilled(ctx, d, offset)
}

// getFilled fills the cache with d from the backend and serves it from
// there, or from the backend if the cache cannot keep it.
//
// The fill outlives a reader that gives up (others may be waiting on it),
// within the bound of a repair; but a reader whose context ends returns
// then, not when the fill does: each waiting reader holds a ByteStream
// slot of the server, and readers abandoned while a backend was down kept
// theirs until it came back.
func (c *CachedBlobStore) getFilled(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	fill := c.fills.DoChan(d.String(), func() (any, error) {
		fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), repairTimeout)
		defer cancel()
		r, err := c.backend.Get(fctx, d, 0)
		if err != nil {
			return nil, backendError(c.name, err)
		}
		defer r.Close()
		return nil, c.cache.Put(fctx, d, namedReader{r, c.name})
	})
	var err error
	select {
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	case res := <-fill:
		err = res.Err
	}
	switch {
	case status.Code(err) == codes.ResourceExhausted, errors.Is(err, storage.ErrLargerThanStore):
		// Larger than the cache, or its disk is full: read past it.
	case err != nil:
		return nil, err
	default:
		if r, err := c.cache.Get(ctx, d, offset); status.Code(err) != codes.NotFound {
			return r, err
		}
		// Evicted already by other fills: read past the cache.
	}
	r, err := c.backend.Get(ctx, d, offset)
	if err != nil {
		return nil, backendError(c.name, err)
	}
	return namedReader{r, c.name}, nil
}

// cacheReader serves a blob from the cache. If the cache finds its copy
// corrupt (DATA_LOSS) before a byte of it was served, the disk store has
// removed it, and the blob is served from the backend instead, filling the
// cache again: the backend's copy is the one of record, and a bit flipped
// in the cache must not fail a read the backend can serve. A small blob is
// read whole by its first Read (BatchReadBlobs, and ByteStream reads of
// less than a chunk), so that is the common case. Once bytes were served,
// a corrupt copy is DATA_LOSS, as on any store, and the next read refills.
// Not safe for concurrent use.
type cacheReader struct {
	c      *CachedBlobStore
	ctx    context.Context
	d      digest.Digest
	offset int64
	r      io.ReadCloser
	served bool // a byte was served, or the backend was asked
}

func (r *cacheReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 || r.served || status.Code(err) != codes.DataLoss {
		r.served = r.served || n > 0
		return n, err
	}
	r.served = true
	r.c.log.Warn("cached copy corrupt; serving the blob from the backend", "digest", r.d.String(), "error", err)
	r.r.Close()
	next, err := r.c.getFilled(r.ctx, r.d, r.offset)
	if err != nil {
		r.r = failedReader{err}
		return 0, err
	}
	r.r = next
	return r.r.Read(p)
}

func (r *cacheReader) Close() error { return r.r.Close() }

// failedReader is a reader whose every Read fails with err.
type failedReader struct{ err error }

func (r failedReader) Read([]byte) (int, error) { return 0, r.err }
func (r failedReader) Close() error             { return nil }

// Put implements storage.BlobStore: the blob streams to the backend and
// the cache at once; the cache commits its copy only if the backend
// stored the blob.
func (c *CachedBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	backendOK := func(errs []error) error {
		if errs[0] != nil {
			return status.Error(codes.Aborted, "backend refused the blob")
		}
		return nil
	}
	errs := putAll(ctx, d, r, []storage.BlobStore{c.backend, c.cache}, []func([]error) error{nil, backendOK}, 0)
	if errs[0] != nil {
		return backendError(c.name, errs[0])
	}
	if errs[1] != nil && status.Code(errs[1]) != codes.ResourceExhausted && !errors.Is(errs[1], storage.ErrLargerThanStore) {
		c.log.Warn("blob stored in the backend but not in the local cache", "digest", d.String(), "error", errs[1])
	}
	return nil
}

var _ storage.BlobStore = (*CachedBlobStore)(nil)
