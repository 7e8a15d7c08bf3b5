package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/atomicfile"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/fileid"
	"github.com/paddock-build/paddock/internal/lru"
)

// DiskOptions configures a DiskBlobStore.
type DiskOptions struct {
	// Dir holds the blobs (Dir/cas/<function>/<2 hex>/<hash>) and in-flight
	// writes (Dir/tmp). It is created if missing.
	Dir string
	// MaxBytes bounds the disk that stored blobs and the uploads in
	// progress take, each file counted in whole blocks of its filesystem
	// plus its inode (disk_cost.go), not by its size; the least recently
	// used blobs are evicted past it. Zero means no bound.
	MaxBytes int64
	// Logger receives corruption and eviction reports; nil discards them.
	Logger *slog.Logger
	// ScrubBytesPerSecond, if positive, has every blob hashed again in the
	// background at most this fast, a minute after start and then every
	// ScrubInterval (default 24h): corruption at rest is found even in
	// blobs nobody uses. 0 turns the scrub off.
	ScrubBytesPerSecond int64
	ScrubInterval       time.Duration
}

// DiskBlobStore is the embedded CAS: one read-only file per blob, named by
// its hash under a directory per digest function, sharded by the first two
// hex characters.
//
// Invariants: a file under cas/ always has the bytes its name says (it is
// written under tmp/, verified, then renamed into place, so a crash leaves
// at most a stray file in tmp/, which start-up removes); every indexed blob
// has its file, and every file under cas/ is indexed or doomed (evicted,
// its removal pending, disk_unlink.go), never both (all three change under
// mu); the cost of the indexed blobs and of the Puts in progress
// (reserve), each counted by diskCost, stays within MaxBytes. Bytes are
// verified again on every read, and a file found corrupt is removed, never
// served whole.
//
// Files are 0444 so that the worker can hard-link them into input roots that
// sandboxed actions cannot modify.
type DiskBlobStore struct {
	dir, casDir, tmpDir string
	maxBytes            int64
	blockBytes          int64 // the filesystem's block, for cost (disk_cost.go)
	log                 *slog.Logger
	clock               clock.Clock

	mu      sync.Mutex
	set     *lru.Set[blobKey, *diskEntry] // one entry per file, sized by its cost (index)
	evicted int64
	// inflight is the cost reserved by Puts in progress (their files in
	// tmp/): stored and in-flight costs together stay within maxBytes.
	inflight   int64
	fullLogged time.Time // when makeRoom last said the disk is full (disk_room.go)
	roomLog    roomLog   // what makeRoom evicted since it last said so
	// doomed holds the evicted blobs whose files are not removed yet:
	// false while queued, true while being removed (disk_unlink.go).
	doomed      map[blobKey]bool
	unlinkDone  sync.Cond               // on mu: a doomed file is gone
	unlinkWaits int                     // how many wait on unlinkDone
	remove      func(path string) error // os.Remove; tests block it
	started     chan struct{}           // closed when start-up's background work is done
	refusals    refusalCounts           // blobs refused for want of room (disk_refusals.go)

	verifying      singleflight.Group // one hash per blob at a time (disk_verify.go)
	verifyFailures atomic.Int64
	verifyHashes   atomic.Int64
}

// blobKey names a file: sizes are not part of it, so that one file can
// never be indexed twice under digests of different sizes.
type blobKey struct {
	fn   digest.Function
	hash string
}

func keyOf(d digest.Digest) blobKey { return blobKey{d.Function(), d.Hash()} }

type diskEntry struct {
	d        digest.Digest
	touched  time.Time // last access recorded on disk as mtime
	verified fileid.ID // the file as last hashed; zero: not since start-up
}

// touchInterval is how stale a blob's mtime may get before an access
// refreshes it (mtimes order the LRU when the index is rebuilt).
const touchInterval = 10 * time.Minute

// NewDiskBlobStore opens (or creates) the store under opts.Dir, removes
// leftovers of interrupted writes and rebuilds the index from the files,
// least recently modified first. It makes room on a full disk before it
// returns, but removes blobs past a lowered MaxBytes, and compacts the
// shard directories that leaves large, in the background (evictAtStart).
func NewDiskBlobStore(opts DiskOptions) (*DiskBlobStore, error) {
	return newDiskBlobStore(opts, os.Remove)
}

// newDiskBlobStore is NewDiskBlobStore removing evicted blobs' files with
// remove: tests block it to hold evictions half-done.
func newDiskBlobStore(opts DiskOptions, remove func(string) error) (*DiskBlobStore, error) {
	s := &DiskBlobStore{
		dir:      opts.Dir,
		casDir:   filepath.Join(opts.Dir, "cas"),
		tmpDir:   filepath.Join(opts.Dir, "tmp"),
		maxBytes: opts.MaxBytes,
		log:      opts.Logger,
		clock:    clock.Real{},
		set:      lru.New[blobKey, *diskEntry](),
		doomed:   map[blobKey]bool{},
		remove:   remove,
		started:  make(chan struct{}),
		refusals: newRefusals(),
	}
	s.unlinkDone.L = &s.mu
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if err := os.RemoveAll(s.tmpDir); err != nil {
		return nil, fmt.Errorf("clear interrupted writes: %w", err)
	}
	if err := makePrivateDirs(s.casDir, s.tmpDir); err != nil {
		return nil, fmt.Errorf("create storage directory: %w", err)
	}
	s.blockBytes = fsBlockBytes(s.dir)
	if err := s.rebuild(); err != nil {
		return nil, err
	}
	// Room on the disk first: both evict the least recently used, so
	// whichever needs more decides, and the statfs sees no doomed files.
	_ = s.makeRoom(0) // best effort: a full disk refuses uploads, not the start
	s.evictAtStart(s.started)
	if opts.ScrubBytesPerSecond > 0 {
		go s.scrubLoop(opts.ScrubBytesPerSecond, cmp.Or(opts.ScrubInterval, 24*time.Hour))
	}
	return s, nil
}

// index adds e to the index as the most recently used, at its blob's
// cost: the one way into it, from a commit and from the scan at start-up
// alike. Callers hold mu, or own s alone.
func (s *DiskBlobStore) index(e *diskEntry) {
	s.set.Put(keyOf(e.d), e, s.cost(e.d.SizeBytes()))
}

// lookupLocked finds d's entry; a file of the same hash but another size
// does not count.
func (s *DiskBlobStore) lookupLocked(d digest.Digest) (*diskEntry, bool) {
	e, ok := s.set.Peek(keyOf(d))
	if !ok || e.d != d {
		return nil, false
	}
	return e, true
}

func (s *DiskBlobStore) path(d digest.Digest) string { return s.pathOf(keyOf(d)) }

// pathOf is the file of the blob named k.
func (s *DiskBlobStore) pathOf(k blobKey) string {
	return filepath.Join(s.casDir, strings.ToLower(k.fn.String()), k.hash[:2], k.hash)
}

// FindMissing implements BlobStore. Blobs found count as used, so that a
// client that checks before Execute does not see them evicted right after.
func (s *DiskBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	var missing []digest.Digest
	var touch []digest.Digest
	now := s.clock.Now()
	s.mu.Lock()
	for _, d := range ds {
		e, ok := s.lookupLocked(d)
		if !ok {
			if !d.IsEmpty() {
				missing = append(missing, d)
			}
			continue
		}
		if s.useLocked(e, now) {
			touch = append(touch, d)
		}
	}
	s.mu.Unlock()
	s.touch(touch, now)
	return missing, nil
}

// useLocked moves e to the front and reports whether its mtime needs a
// refresh on disk.
func (s *DiskBlobStore) useLocked(de *diskEntry, now time.Time) bool {
	s.set.Get(keyOf(de.d))
	if now.Sub(de.touched) < touchInterval {
		return false
	}
	de.touched = now
	return true
}

func (s *DiskBlobStore) touch(ds []digest.Digest, now time.Time) {
	for _, d := range ds {
		// Best effort: a lost mtime only makes the order after a restart
		// slightly less accurate. A file verified just before keeps its
		// verification across our own change of its times.
		p := s.path(d)
		before, err := fileid.Stat(p)
		if os.Chtimes(p, now, now) != nil || err != nil {
			continue
		}
		if after, err := fileid.Stat(p); err == nil {
			s.mu.Lock()
			if e, ok := s.lookupLocked(d); ok && e.verified == before {
				e.verified = after
			}
			s.mu.Unlock()
		}
	}
}

// Get implements BlobStore.
func (s *DiskBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if err := CheckOffset(d, offset); err != nil {
		return nil, err
	}
	if d.IsEmpty() {
		return io.NopCloser(strings.NewReader("")), nil
	}
	now := s.clock.Now()
	s.mu.Lock()
	e, ok := s.lookupLocked(d)
	var needTouch bool
	if ok {
		needTouch = s.useLocked(e, now)
	}
	s.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "blob %s not found", d)
	}
	if needTouch {
		s.touch([]digest.Digest{d}, now)
	}
	f, err := s.openBlob(d)
	if errors.Is(err, fs.ErrNotExist) {
		s.forget(d, "file vanished")
		return nil, status.Errorf(codes.NotFound, "blob %s not found", d)
	}
	if err != nil {
		return nil, s.unreadable(d, err)
	}
	if info, err := f.Stat(); err != nil || info.Size() != d.SizeBytes() {
		f.Close()
		s.corrupt(d, "file size differs from digest")
		return nil, status.Errorf(codes.NotFound, "blob %s not found (stored copy was corrupt and has been removed)", d)
	}
	return digest.NewVerifyingReader(f, d, offset, digest.VerifyChecks{
		Bad: func() error {
			s.corrupt(d, "bytes do not match digest")
			return status.Errorf(codes.DataLoss, "blob %s is corrupt in storage and has been removed; upload it again", d)
		},
		Short: func(_ int64, err error) error {
			if err != io.EOF {
				return s.unreadable(d, err)
			}
			// The size was checked at open: the file shrank under us.
			s.corrupt(d, "file was truncated")
			return status.Errorf(codes.DataLoss, "blob %s was truncated in storage and has been removed", d)
		},
	}), nil
}

var _ BlobStore = (*DiskBlobStore)(nil)

// corrupt removes a blob found damaged on read, and says so in the log.
func (s *DiskBlobStore) corrupt(d digest.Digest, why string) {
	s.log.Error("CAS blob corrupt on disk; removed", "digest", d.String(), "reason", why)
	s.forget(d, why)
}

// unreadable is the error of a blob whose file failed to open or read
// with err: one unreadableFile is removed like a corrupt one, and is
// NOT_FOUND; any other error is logged, with the file's path, and
// answered UNAVAILABLE without it.
func (s *DiskBlobStore) unreadable(d digest.Digest, err error) error {
	if unreadableFile(err) {
		s.log.Error("CAS blob unreadable on disk; removed", "digest", d.String(), "error", err)
		s.forget(d, "unreadable")
		return status.Errorf(codes.NotFound, "blob %s not found (its stored copy could not be read and has been removed)", d)
	}
	s.log.Error("read a CAS blob", "digest", d.String(), "error", err)
	return diskReadError("blob "+d.String(), err)
}

func (s *DiskBlobStore) forget(d digest.Digest, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.lookupLocked(d); ok {
		s.set.Remove(keyOf(d))
		_ = os.Remove(s.path(d))
	}
}

// Put implements BlobStore.
func (s *DiskBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	if stored, err := s.admit(d); stored || err != nil {
		return err
	}
	res := &reservation{d: d}
	defer s.release(res)
	tmp, err := atomicfile.Create(s.tmpDir, 0o444)
	if err != nil {
		return s.writeFailed(res, err)
	}
	defer tmp.Abort()
	h := d.NewHasher()
	w := &reservedWriter{ctx: ctx, s: s, res: res, w: tmp}
	n, err := copyContext(ctx, io.MultiWriter(w, h), io.LimitReader(r, d.SizeBytes()+1), d.SizeBytes()+1)
	if w.refused != nil {
		return w.refused
	}
	if err != nil {
		return s.writeFailed(res, err)
	}
	if n != d.SizeBytes() {
		return status.Errorf(codes.InvalidArgument, "blob %s: got %d bytes, digest says %d", d, n, d.SizeBytes())
	}
	if got := hexSum(h); got != d.Hash() {
		return status.Errorf(codes.InvalidArgument, "blob %s: data hashes to %s", d, got)
	}
	if err := s.commit(d, tmp, res); err != nil {
		return s.writeFailed(res, err)
	}
	return nil
}

// admit reports whether d is stored already (empty, or there: it counts
// as used, as FindMissing's do, so that a client that uploads without
// asking first does not see it evicted next), or refuses it: larger than
// the store, or than the disk.
func (s *DiskBlobStore) admit(d digest.Digest) (stored bool, err error) {
	if d.IsEmpty() {
		return true, nil
	}
	if s.maxBytes > 0 && s.cost(d.SizeBytes()) > s.maxBytes {
		return false, s.refuse(refusedOverBound, d, fmt.Sprintf("it is larger than the whole CAS (max_bytes %d, counting the disk blocks and inode each file takes)", s.maxBytes))
	}
	now := s.clock.Now()
	s.mu.Lock()
	e, exists := s.lookupLocked(d)
	touch := exists && s.useLocked(e, now)
	s.mu.Unlock()
	if touch {
		s.touch([]digest.Digest{d}, now)
	}
	if exists {
		return true, nil
	}
	return false, s.checkFitsDisk(d)
}

// commit links the written and verified tmp into place as blob d and
// indexes it, unless a concurrent writer already did, then removes the
// files of the blobs that evicts (after mu is released).
func (s *DiskBlobStore) commit(d digest.Digest, tmp *atomicfile.File, res *reservation) error {
	s.mu.Lock()
	doomed, err := s.commitLocked(d, tmp, res)
	s.mu.Unlock()
	s.unlink(doomed)
	return err
}

// commitLocked is commit's part under mu; it returns the keys of the
// blobs it evicted, whose files are left to remove.
func (s *DiskBlobStore) commitLocked(d digest.Digest, tmp *atomicfile.File, res *reservation) ([]blobKey, error) {
	final := s.path(d)
	// An old file of d's still to be removed must not take the new one
	// (disk_unlink.go). This may release mu: the index is checked after.
	s.reclaimLocked(keyOf(d))
	if _, ok := s.lookupLocked(d); ok { // a concurrent writer won
		return nil, nil
	}
	// A file of this hash with the wrong size (damaged by a power loss,
	// say) is about to be replaced: forget it.
	s.set.Remove(keyOf(d))
	if err := tmp.Commit(final); err != nil {
		return nil, err // Put's writeFailed gives it its context
	}
	e := &diskEntry{d: d, touched: s.clock.Now()}
	if id, err := fileid.Stat(final); err == nil {
		e.verified = id // hashed on the way in
	}
	s.releaseLocked(res) // counted as stored from here, at the same cost
	s.index(e)
	doomed, _ := s.evictLocked()
	return doomed, nil
}

// evictLocked takes least recently used blobs out of the index until the
// store fits beside the room reserved by Puts in progress, and returns
// their keys and bytes: the caller removes their files with unlink once
// mu is released (disk_unlink.go).
func (s *DiskBlobStore) evictLocked() (doomed []blobKey, bytes int64) {
	if s.maxBytes <= 0 {
		return nil, 0
	}
	return s.doomLocked(s.set.EvictOver(s.maxBytes-s.inflight, nil))
}

// Stats reports the bytes stored, as counted against MaxBytes (diskCost
// of the blobs' files), the number of blobs and how many were evicted.
func (s *DiskBlobStore) Stats() (usedBytes int64, blobs int, evicted int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.set.Size(), s.set.Len(), s.evicted
}
