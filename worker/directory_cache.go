package worker

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/lru"
	"github.com/paddock-build/paddock/storage"
)

// maxDirectoryBytes bounds one Directory proto read from the CAS.
const maxDirectoryBytes = 16 << 20

// defaultDirectoryCacheBytes bounds the weight (directoryWeight) of the
// Directories a worker keeps parsed. 64 MiB holds about 240,000 file
// entries of typical Directories (short names, SHA-256 digests: 274 bytes
// of weight each): a tree the size of the Linux kernel's sources (80,000
// files in 5,000 directories, about 26 MiB) twice over, more than most
// actions' input trees together. A miss costs one read of a Directory from
// the CAS, not a failed action, so the bound is kept small beside the
// worker's other memory rather than large enough for every tree.
const defaultDirectoryCacheBytes = 64 << 20

// directoryCache keeps parsed Directory protos by digest: build after build
// reuses most of a tree, so most directories are never fetched twice. It
// holds at most maxBytes of them, by directoryWeight (an estimate of the
// heap each holds, not its count: a bound of 100,000 entries let 50
// actions naming one 16 MB Directory each take a worker to 2.9 GB), least
// recently used evicted first. A Directory weighing more than maxEntry is
// served but not cached, so that one huge Directory does not flush the
// cache on every build that names it.
//
// Only Directories of trees that passed the input limits are added
// (checkExpanded adds them when the whole tree has passed): a refused
// action's Directories, which a client can make as large as it likes,
// hold no memory once it is refused.
//
// Each CAS partition (FileCache.partition) has entries of its own: shared,
// a Directory that one tenant's action had fetched was served to another
// tenant's naming its digest, whose own partition does not hold it, and
// its names, symlink targets and file digests were laid out in that
// action's input root.
//
// Safe for concurrent use; the cached protos are shared and never changed.
type directoryCache struct {
	set      *lru.Set[dirKey, *repb.Directory] // sizes are directoryWeight
	maxBytes int64
	maxEntry int64
}

// dirKey is a Directory's digest in a CAS partition.
type dirKey struct {
	part string
	d    digest.Digest
}

// newDirectoryCache returns a cache of at most maxBytes of Directories,
// each at most a sixteenth of that.
func newDirectoryCache(maxBytes int64) *directoryCache {
	return &directoryCache{set: lru.New[dirKey, *repb.Directory](), maxBytes: maxBytes, maxEntry: maxBytes / 16}
}

// get returns Directory d of partition part if it is cached.
func (c *directoryCache) get(part string, d digest.Digest) (*repb.Directory, bool) {
	return c.set.Get(dirKey{part, d})
}

// add caches dir, Directory d of partition part, unless it weighs more
// than maxEntry, and evicts the least recently used past maxBytes.
func (c *directoryCache) add(part string, d digest.Digest, dir *repb.Directory) {
	w := directoryWeight(d.SizeBytes(), dir)
	if w > c.maxEntry {
		return
	}
	c.set.Put(dirKey{part, d}, dir, w)
	c.set.EvictOver(c.maxBytes, nil)
}

// fetchDirectory reads Directory d from cas (uncached).
func fetchDirectory(ctx context.Context, cas storage.BlobStore, d digest.Digest) (*repb.Directory, error) {
	dir := &repb.Directory{}
	if err := storage.GetProto(ctx, cas, d, dir, maxDirectoryBytes); err != nil {
		return nil, err
	}
	return dir, nil
}

// The weights of directoryWeight come from TestDirectoryWeightCoversItsHeap
// (run it with -v to see them), which parses copies of Directories of
// 1,000 entries of each shape below and reads the heap they hold with
// runtime.MemStats (Go 1.26, amd64), per entry:
//
//	shape                                  wire    heap   weight
//	files, 7-byte names, SHA-256 digests     81     220      274
//	files, 200-byte names                   278     407      471
//	directories, 7-byte names                81     206      274
//	symlinks, short names and targets        24     112      121
//	empty FileNodes                           2      88      195
//	empty NodeProperty entries                2      88       99
//	files with every NodeProperties field    12     431      589
//
// and about 410 bytes per cache entry besides (the Directory struct, the
// key with its hash, the list element and the map slot).
//
// So the heap of a parsed Directory is not a multiple of its wire size:
// strings and unknown fields are copied (about their wire bytes), but each
// message is a struct of its own (FileNode 80 bytes, Digest 64, plus its
// pointer in a slice grown by appending) whose wire form can be 2 bytes.
// Typical Directories hold 1.5 to 5 times their wire size; one of empty
// entries, 44 times, and a client chooses which it sends. The weight
// therefore counts messages: the wire bytes, plus messageWeight per
// message, plus directoryOverhead per Directory. It is at or above the
// heap measured for every shape, so maxBytes bounds the heap, and at most
// a third above it for typical Directories.
const (
	messageWeight     = 96
	directoryOverhead = 512
)

// directoryWeight is the weight of dir, whose wire form is wire bytes: an
// upper estimate of the heap it holds (see messageWeight). It counts each
// node as holding a Digest, and each NodeProperties as holding an mtime
// and a mode, whether or not they are set: one pass over the entries,
// done only when a Directory is added to the cache.
func directoryWeight(wire int64, dir *repb.Directory) int64 {
	msgs := propertyMessages(dir.NodeProperties)
	for _, f := range dir.Files {
		msgs += 2 + propertyMessages(f.NodeProperties)
	}
	msgs += 2 * int64(len(dir.Directories))
	for _, s := range dir.Symlinks {
		msgs += 1 + propertyMessages(s.NodeProperties)
	}
	return directoryOverhead + wire + msgs*messageWeight
}

// propertyMessages is the messages p holds, counting its mtime and mode
// as set.
func propertyMessages(p *repb.NodeProperties) int64 {
	if p == nil {
		return 0
	}
	return 3 + int64(len(p.Properties))
}
