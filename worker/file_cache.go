package worker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"

	"golang.org/x/sync/singleflight"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/atomicfile"
	"github.com/paddock-build/paddock/internal/fileid"
	"github.com/paddock-build/paddock/internal/lru"
	"github.com/paddock-build/paddock/storage"
)

// LocalBlobs is implemented by a CAS on this machine's disk
// (storage.DiskBlobStore): its files can be hard-linked directly.
type LocalBlobs interface {
	// Path returns d's file, verified to hold d's bytes.
	Path(d digest.Digest) (string, bool)
	// Has reports whether the store holds d, without touching its file.
	Has(d digest.Digest) bool
}

// FileCacheOptions configures a FileCache.
type FileCacheOptions struct {
	// Dir holds the cached files. It must be on the same filesystem as the
	// build directories (hard links cannot cross filesystems; the cache then
	// falls back to copies).
	Dir string
	// MaxBytes bounds the cache; least recently used files are removed past
	// it (input roots that link them keep their links). 0: unbounded.
	MaxBytes int64
	// CAS is where missing files are fetched from.
	CAS storage.BlobStore
	// Local, if set, is a CAS on this filesystem whose (read-only) files are
	// linked directly: in `paddock up` the file cache is the CAS directory,
	// so a non-executable input is never copied. Executable files still get
	// their own 0555 copy here, since a hard link shares the mode.
	Local LocalBlobs
	// PartitionOf, if set, maps an action's instance name (from the
	// context, storage.WithInstance) to its tenant's CAS partition: each
	// partition gets its own cached copies, so no hard link in one tenant's
	// input root shares a file with another partition's. Local must then be
	// nil (a shared CAS directory would be linked across partitions).
	PartitionOf func(instance string) string
}

// FileCache holds one read-only file per (digest, executable bit), owned by
// the worker's user (root), which the sandboxed actions do not have: an
// action can unlink a hard link in its input root but never change the
// cached bytes. Files are written to Dir/tmp and renamed into place. A file
// that reaches the filesystem's link limit gets a replica beside it (see
// file_cache_replicas.go), an entry like any other. FileCache is safe for
// concurrent use; concurrent requests for one file fetch it once.
type FileCache struct {
	opts    FileCacheOptions
	tmpDir  string
	fetches singleflight.Group
	set     *lru.Set[cacheKey, cacheEntry] // sized by blob size
	// link is link(2) (os.Link): tests replace it to reach the link limit
	// (EMLINK) in a few links instead of ext4's 65,000.
	link func(oldname, newname string) error

	// links counts Link calls and fetched the files written into the
	// cache (from the CAS or the local CAS file): the hit ratio's terms.
	links, fetched atomic.Int64

	holds holds // input roots being built (file_cache_hold.go)
}

type cacheKey struct {
	d    digest.Digest
	exec bool
	part string // CAS partition ("" unpartitioned)
	gen  int    // replica number: 0, then one more per link limit reached
}

type cacheEntry struct {
	path string
	id   fileid.ID // the file as written and hashed
	// full is the file's link count when link(2) refused another link
	// (EMLINK), 0 while it takes links: a pointer, so that every copy of
	// the entry that Get and Peek return sees one value.
	full *atomic.Uint64
}

// NewFileCache empties opts.Dir (a worker restart starts with a clean
// cache: entries are cheap to fetch again and the index lives in memory)
// and returns the cache.
func NewFileCache(opts FileCacheOptions) (*FileCache, error) {
	if opts.Local != nil && opts.PartitionOf != nil {
		return nil, errors.New("file cache: Local and PartitionOf exclude each other: links from one CAS directory would cross partitions")
	}
	if err := os.RemoveAll(opts.Dir); err != nil {
		return nil, fmt.Errorf("clear file cache: %w", err)
	}
	c := &FileCache{opts: opts, tmpDir: filepath.Join(opts.Dir, "tmp"), set: lru.New[cacheKey, cacheEntry](), link: os.Link}
	// 0700: tenants' inputs; sandboxes reach them by hard links only.
	err := os.MkdirAll(filepath.Dir(opts.Dir), 0o755)
	for _, d := range []string{opts.Dir, c.tmpDir} {
		if err == nil {
			err = os.Mkdir(d, 0o700)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("create file cache: %w", err)
	}
	return c, nil
}

// Link makes dst a hard link to the cached copy of d (fetching it first
// if needed), with mode 0555 if exec and 0444 otherwise. dst must not exist.
//
// A cached file at the link limit (EMLINK) is never copied into dst: that
// copy would be counted by nothing (the cache's bound, the action's disk
// quota), and a few kilobytes of Directory blobs naming one blob 75,000
// times made 10,000 of them. The link is made from another replica in the
// cache instead, so N links to a file cost about N/65,000 cached copies.
// Only a cache on another filesystem than dst (EXDEV) copies into dst.
func (c *FileCache) Link(ctx context.Context, d digest.Digest, exec bool, dst string) error {
	c.links.Add(1)
	base := cacheKey{d: d, exec: exec, part: c.partition(ctx)}
	if !exec && c.opts.Local != nil {
		if p, ok := c.opts.Local.Path(d); ok {
			if err := c.link(p, dst); err == nil {
				return nil
			}
			// Evicted meanwhile, at the link limit, or another
			// filesystem: use our own copy.
		}
	}
	retried, refused := false, 0
	for {
		k, from := c.pick(base)
		p, err := c.ensure(ctx, k, from)
		if err != nil {
			return err
		}
		err = c.link(p, dst)
		switch {
		case err == nil:
			c.dropOversized(k, p)
			return nil
		case errors.Is(err, fs.ErrNotExist) && !retried:
			retried = true
			c.forget(k) // evicted between ensure and link
		case errors.Is(err, unix.EMLINK):
			if c.markFull(k, p) {
				continue // the next pick is another replica
			}
			refused++
			if refused > maxRefusals {
				return diskError(fmt.Errorf("link input %s: %w", d, err))
			}
		case errors.Is(err, unix.EXDEV):
			// Only copies can cross filesystems. They are bounded by
			// the action's InputLimits alone (max_input_bytes).
			err := copyFile(p, dst)
			c.dropOversized(k, p)
			return diskError(err)
		default:
			return diskError(fmt.Errorf("link input %s: %w", d, err))
		}
	}
}

// ensure returns the path of the cached file for k, writing it if needed
// from the file from (a replica of k's, "" for none) or else fetching it.
func (c *FileCache) ensure(ctx context.Context, k cacheKey, from string) (string, error) {
	if ce, ok := c.set.Get(k); ok {
		// A file changed since it was written and hashed (a flipped byte,
		// a truncation) is dropped and fetched again, never linked.
		if id, err := fileid.Stat(ce.path); err == nil && id == ce.id {
			return ce.path, nil
		}
		if cur, ok := c.set.Peek(k); ok && cur == ce {
			c.set.Remove(k)
			os.Remove(ce.path)
		}
	}
	return c.fill(k, func(p string) (fileid.ID, error) { return c.fetch(ctx, k, p, from) })
}

// fill writes entry k's file with write and records it, unless k has an
// entry: concurrent callers for one entry share one write (and the
// entry's file is never written again under its links), which the
// entries Prefetch writes share with those Link fetches.
func (c *FileCache) fill(k cacheKey, write func(p string) (fileid.ID, error)) (string, error) {
	name := entryName(k)
	v, err, _ := c.fetches.Do(name, func() (any, error) {
		if ce, ok := c.set.Peek(k); ok {
			// Written by a fill that ended since the caller looked:
			// writing it again would replace the file its links are
			// made from.
			return ce.path, nil
		}
		p := filepath.Join(c.opts.Dir, name[:2], name)
		id, err := write(p)
		if isDiskFull(err) && c.makeRoom() {
			// The disk is smaller than MaxBytes, or shared: give back
			// what unused entries hold and try once more.
			id, err = write(p)
		}
		if err != nil {
			return "", diskError(err)
		}
		c.add(k, p, id)
		return p, nil
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

// fetch writes d's bytes to p, read-only, from the replica from if it is
// there and whole, else from the local CAS file if there is one, else from
// the CAS.
func (c *FileCache) fetch(ctx context.Context, k cacheKey, p, from string) (fileid.ID, error) {
	if from != "" {
		if id, err := c.copyReplica(k, p, from); err == nil || isDiskFull(err) {
			return id, err
		}
		// Evicted meanwhile, or changed (write checks the digest).
	}
	var src io.ReadCloser
	if c.opts.Local != nil {
		if lp, ok := c.opts.Local.Path(k.d); ok {
			if f, err := os.Open(lp); err == nil {
				src = f
			}
		}
	}
	if src == nil {
		r, err := c.opts.CAS.Get(ctx, k.d, 0)
		if err != nil {
			return fileid.ID{}, err
		}
		src = r
	}
	defer src.Close()
	return c.write(k, p, src)
}

// write stores src's bytes as the entry file p, checking them against k's
// digest; the file appears whole or not at all.
func (c *FileCache) write(k cacheKey, p string, src io.Reader) (fileid.ID, error) {
	mode := os.FileMode(0o444)
	if k.exec {
		mode = 0o555
	}
	tmp, err := atomicfile.Create(c.tmpDir, mode)
	if err != nil {
		return fileid.ID{}, fmt.Errorf("cache input %s: %w", k.d, err)
	}
	defer tmp.Abort()
	h := k.d.NewHasher()
	n, err := io.Copy(io.MultiWriter(tmp, h), src)
	if err != nil {
		return fileid.ID{}, fmt.Errorf("cache input %s: %w", k.d, err)
	}
	if n != k.d.SizeBytes() || hex.EncodeToString(h.Sum(nil)) != k.d.Hash() {
		return fileid.ID{}, status.Errorf(codes.DataLoss, "input %s: the bytes fetched from the CAS do not match the digest", k.d)
	}
	if err := tmp.Commit(p); err != nil {
		return fileid.ID{}, fmt.Errorf("cache input %s: %w", k.d, err)
	}
	return fileid.Stat(p)
}

// entryName is the file name of k's entry.
func entryName(k cacheKey) string {
	name := k.d.Hash() + "-" + strconv.FormatInt(k.d.SizeBytes(), 10)
	if k.exec {
		name += "-x"
	}
	if k.part != "" {
		// Partition names may be instance names, with slashes: a hash.
		sum := sha256.Sum256([]byte(k.part))
		name += "@" + hex.EncodeToString(sum[:8])
	}
	if k.gen > 0 {
		name += ".r" + strconv.Itoa(k.gen)
	}
	return name
}

// partition is the CAS partition of ctx's action; "" without PartitionOf.
func (c *FileCache) partition(ctx context.Context) string {
	if c.opts.PartitionOf == nil {
		return ""
	}
	instance, _ := storage.InstanceFrom(ctx)
	return c.opts.PartitionOf(instance)
}

// add records a written entry, unless a concurrent fetch did, and evicts
// least recently used entries past MaxBytes (never the one just added).
func (c *FileCache) add(k cacheKey, p string, id fileid.ID) {
	c.fetched.Add(1)
	if _, ok := c.set.Peek(k); ok {
		return
	}
	c.set.Put(k, cacheEntry{path: p, id: id, full: new(atomic.Uint64)}, k.d.SizeBytes())
	if c.opts.MaxBytes <= 0 {
		return
	}
	// An entry larger than the cache is kept while it is linked (just
	// added, or held for the roots being built): the others are evicted
	// as if it were not there, not all of them to make room for it.
	allow := c.opts.MaxBytes
	if k.d.SizeBytes() > c.opts.MaxBytes {
		c.holds.postpone(k, p)
		if !c.holds.has(k) {
			allow += k.d.SizeBytes()
		}
	}
	allow += c.holds.bytes()
	for _, e := range c.set.EvictOver(allow, func(key cacheKey, _ cacheEntry) bool { return key == k || c.holds.has(key) }) {
		os.Remove(e.Value.path)
	}
}

// dropOversized removes entry k, at p, once it is linked, if it alone is
// larger than MaxBytes: add never evicts the entry it adds (the caller
// is about to link it), so one larger than the whole cache stayed,
// past the bound, until another entry was added (a 4 GiB executable
// input held 4 GiB beside a 2 GiB cache). The input root's link keeps
// the file for its action. While input roots are being built (Hold),
// it is removed when the last is done.
func (c *FileCache) dropOversized(k cacheKey, p string) {
	if c.opts.MaxBytes <= 0 || k.d.SizeBytes() <= c.opts.MaxBytes {
		return
	}
	if c.holds.postpone(k, p) {
		return
	}
	c.drop(k, p)
}

// drop removes entry k if its file is still p.
func (c *FileCache) drop(k cacheKey, p string) {
	if ce, ok := c.set.Peek(k); ok && ce.path == p {
		c.set.Remove(k)
		os.Remove(p)
	}
}

func (c *FileCache) forget(k cacheKey) {
	c.set.Remove(k) // its file is already gone
}

// makeRoom removes the least recently used half of the entries (at least
// one) and reports whether it removed any. Entries linked into running
// input roots free no space until those go, so half, not one.
func (c *FileCache) makeRoom() bool {
	removed := c.set.RemoveOldest(max(1, c.set.Len()/2))
	for _, e := range removed {
		os.Remove(e.Value.path)
	}
	return len(removed) > 0
}

// isDiskFull reports ENOSPC and EDQUOT.
func isDiskFull(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// diskError is the status of a failed file operation: RESOURCE_EXHAUSTED
// for a full disk, INTERNAL with only the errno otherwise (the error's own
// text names host paths); statuses pass through.
func diskError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if isDiskFull(err) {
		return status.Error(codes.ResourceExhausted, "the worker's disk is full")
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		return status.Errorf(codes.Internal, "file cache: %v", errno)
	}
	return status.Error(codes.Internal, "file cache: cannot store the file")
}

// Counts reports how many inputs were linked and how many files were
// fetched into the cache (including ahead of time, by Prefetch), for the
// hit ratio.
func (c *FileCache) Counts() (links, fetched int64) { return c.links.Load(), c.fetched.Load() }

// Stats reports the bytes and files cached.
func (c *FileCache) Stats() (bytes int64, files int) {
	return c.set.Size(), c.set.Len()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
