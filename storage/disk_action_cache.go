package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/atomicfile"
	"github.com/paddock-build/paddock/internal/lru"
)

// maxActionResultBytes bounds an action cache entry read from disk.
const maxActionResultBytes = 16 << 20

// DiskActionCache stores one file per (instance name, action digest) under
// Dir/ac/<2 hex>/<key>, where key hashes both, so instance names (which may
// hold slashes) never become paths and instances never share entries.
// Entries are written to Dir/tmp and renamed into place, so readers see the
// old or the new result, never a mix. The entries' total size is bounded
// (DefaultActionCacheBytes unless set): past it, the least recently read
// or written are evicted. One that is not whole (its hash does not match,
// see EncodeActionResultEntry) or no longer parses is removed and reported as
// NOT_FOUND.
type DiskActionCache struct {
	acDir, tmpDir string
	maxBytes      int64
	blockBytes    int64 // of acDir's filesystem (fsBlockBytes)
	log           *slog.Logger
	set           *lru.Set[string, struct{}] // entry keys, sized by cost
	// mu orders the changes of entry files: a commit with its indexing, a
	// removal with its check that the entry is not indexed again, and a
	// shard directory's compaction (disk_action_cache_evict.go).
	mu      sync.Mutex
	started chan struct{} // closed when start-up's background work is done
}

// cost is what an entry file of size bytes counts against maxBytes: the
// disk it takes (diskCost), as a CAS blob does. Counted at their sizes,
// 40,000 results of 38 bytes came to 1.5 MB of the bound and took 161 MiB
// and 40,000 inodes, and the default bound of 1 GiB would have let 28
// million of them take 113 GB.
func (c *DiskActionCache) cost(size int64) int64 { return diskCost(size, c.blockBytes) }

// DefaultActionCacheBytes bounds a DiskActionCache unless told otherwise:
// each result counts at least a block and an inode (cost), so this is
// about 250,000 of them.
const DefaultActionCacheBytes = 1 << 30

// NewDiskActionCache opens (or creates) the action cache under dir,
// bounded to DefaultActionCacheBytes. It may share dir with a
// DiskBlobStore (whose start-up clears Dir/tmp: open the blob store first).
func NewDiskActionCache(dir string, logger *slog.Logger) (*DiskActionCache, error) {
	return NewDiskActionCacheBounded(dir, DefaultActionCacheBytes, logger)
}

// NewDiskActionCacheBounded is NewDiskActionCache with a bound of maxBytes
// (0: unbounded). Existing entries are indexed at start-up, least recently
// modified first in eviction order; the files of those past the bound are
// removed in the background (disk_action_cache_evict.go).
func NewDiskActionCacheBounded(dir string, maxBytes int64, logger *slog.Logger) (*DiskActionCache, error) {
	c := &DiskActionCache{acDir: filepath.Join(dir, "ac"), tmpDir: filepath.Join(dir, "tmp"), maxBytes: maxBytes, log: logger,
		set: lru.New[string, struct{}](), started: make(chan struct{})}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if err := makePrivateDirs(c.acDir, c.tmpDir); err != nil {
		return nil, fmt.Errorf("create action cache directory: %w", err)
	}
	c.blockBytes = fsBlockBytes(c.acDir)
	if err := c.rebuild(); err != nil {
		return nil, err
	}
	c.evictAtStart()
	return c, nil
}

// rebuild indexes the entries on disk, oldest first (lru.OldestFirst).
func (c *DiskActionCache) rebuild() error {
	var all []lru.Found[string]
	err := filepath.WalkDir(c.acDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		if !isKey(de.Name()) || c.keyPath(de.Name()) != p {
			// Not an entry: left by a crash in the middle of replacing one
			// (atomicfile's link beside it), or put there by hand.
			c.log.Warn("removing stray file from action cache", "path", p)
			return os.Remove(p)
		}
		all = append(all, lru.Found[string]{Key: de.Name(), Size: info.Size(), Written: info.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("scan action cache: %w", err)
	}
	lru.OldestFirst(all, time.Now())
	for _, f := range all {
		c.set.Put(f.Key, struct{}{}, c.cost(f.Size))
	}
	return nil
}

// Stats reports the bytes and number of entries stored.
func (c *DiskActionCache) Stats() (bytes int64, entries int) { return c.set.Size(), c.set.Len() }

func (c *DiskActionCache) key(instance string, action digest.Digest) string {
	h := sha256.New()
	fmt.Fprintf(h, "%d\x00%s\x00%s/%s", len(instance), instance, action.Function(), action)
	return hex.EncodeToString(h.Sum(nil))
}

// isKey reports whether name has the form of a key: 64 lower-case hex
// digits.
func isKey(name string) bool {
	if len(name) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil && strings.ToLower(name) == name
}

func (c *DiskActionCache) keyPath(key string) string { return filepath.Join(c.acDir, key[:2], key) }

// Get implements ActionCache.
func (c *DiskActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	key := c.key(instance, action)
	p := c.keyPath(key)
	b, err := os.ReadFile(p)
	if _, indexed := c.set.Peek(key); indexed && errors.Is(err, fs.ErrNotExist) {
		// Once more under mu, which no shard directory is swapped
		// without (compactShard): the first read may have gone through
		// one swapped out and emptied meanwhile.
		c.mu.Lock()
		if b, err = os.ReadFile(p); errors.Is(err, fs.ErrNotExist) {
			c.set.Remove(key)
		}
		c.mu.Unlock()
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q", action, instance)
	}
	if err != nil && unreadableFile(err) {
		c.log.Error("action cache entry unreadable; removed", "instance", instance, "action", action.String(), "error", err)
		c.mu.Lock()
		_ = os.Remove(p)
		c.set.Remove(key)
		c.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q", action, instance)
	}
	if err != nil {
		c.log.Error("read an action cache entry", "instance", instance, "action", action.String(), "error", err)
		return nil, diskReadError("the action result for "+action.String(), err)
	}
	r := &repb.ActionResult{}
	if pb, whole := DecodeActionResultEntry(b); !whole || len(b) > maxActionResultBytes+ActionResultEntryHeaderBytes || proto.Unmarshal(pb, r) != nil {
		// An entry of the format before the header (an upgrade) is
		// a miss like a damaged one, but no error: logged as corrupt,
		// each lookup of a farm's old entries was an ERROR line.
		if OlderActionResultEntry(b) {
			c.log.Debug("action cache entry of an older format; removed", "instance", instance, "action", action.String())
		} else {
			c.log.Error("action cache entry corrupt; removed", "instance", instance, "action", action.String())
		}
		c.mu.Lock()
		_ = os.Remove(p)
		c.set.Remove(key)
		c.mu.Unlock()
		return nil, status.Errorf(codes.NotFound, "no action result for %s in instance %q", action, instance)
	}
	c.set.Get(key) // a read counts as a use
	return r, nil
}

// Put implements ActionCache.
func (c *DiskActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	b, err := proto.Marshal(result)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "action result: %v", err)
	}
	if len(b) > maxActionResultBytes {
		return status.Errorf(codes.InvalidArgument, "action result is %d bytes, more than the %d allowed", len(b), maxActionResultBytes)
	}
	if c.maxBytes > 0 && c.cost(int64(len(b)+ActionResultEntryHeaderBytes)) > c.maxBytes {
		// Stored, it would be evicted at once, with every other entry
		// (the write acknowledged, nothing kept): the spec's answer to
		// a cache without room for the entry.
		return status.Errorf(codes.ResourceExhausted, "action result is %d bytes, more than the whole action cache holds (action_cache_max_bytes, %d bytes)", len(b), c.maxBytes)
	}
	key := c.key(instance, action)
	p := c.keyPath(key)
	what := "action result for " + action.String()
	tmp, err := atomicfile.Create(c.tmpDir, 0o600)
	if err != nil {
		return diskWriteError(what, "the action cache's disk", err)
	}
	defer tmp.Abort()
	entry := EncodeActionResultEntry(b)
	if _, err := tmp.Write(entry); err != nil {
		return diskWriteError(what, "the action cache's disk", err)
	}
	c.mu.Lock()
	err = tmp.Commit(p)
	if err == nil {
		c.set.Put(key, struct{}{}, c.cost(int64(len(entry))))
	}
	c.mu.Unlock()
	if err != nil {
		return diskWriteError(what, "the action cache's disk", err)
	}
	c.evict()
	return nil
}

var _ ActionCache = (*DiskActionCache)(nil)
