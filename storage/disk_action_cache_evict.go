package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/paddock-build/paddock/internal/dirnames"
	"github.com/paddock-build/paddock/internal/lru"
)

// How a DiskActionCache evicts, and gets back within a lowered bound at
// start-up, as the disk CAS does (disk_unlink.go, disk_shard_dirs.go):
// the entries past the bound leave the index at once, and at start-up
// their files are removed in the background, so that a large cache
// reopened with a lower bound does not keep the port closed while
// thousands of files go; then its shard directories, which ext4 never
// shrinks, are compacted. A file is removed only while its entry is not
// indexed again (under mu), so a Put of the same action meanwhile keeps
// its new file.

// evict removes the least recently used entries past the bound.
func (c *DiskActionCache) evict() {
	if c.maxBytes <= 0 {
		return
	}
	c.removeEvicted(c.set.EvictOver(c.maxBytes, nil))
}

// removeEvicted removes the files of evicted entries not stored again.
func (c *DiskActionCache) removeEvicted(evicted []lru.Entry[string, struct{}]) {
	for _, e := range evicted {
		c.mu.Lock()
		if _, again := c.set.Peek(e.Key); !again {
			if err := os.Remove(c.keyPath(e.Key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				c.log.Warn("evict action cache entry", "error", err)
			}
		}
		c.mu.Unlock()
	}
}

// evictAtStart evicts down to the bound once the index is rebuilt, says
// so, and removes the files and compacts the shard directories in the
// background; started is closed when that is done.
func (c *DiskActionCache) evictAtStart() {
	var evicted []lru.Entry[string, struct{}]
	if c.maxBytes > 0 {
		evicted = c.set.EvictOver(c.maxBytes, nil)
	}
	if len(evicted) > 0 {
		c.log.Info("the action cache holds more than its bound: evicted its least recently used entries, removing their files in the background",
			"entries", len(evicted), "max_bytes", c.maxBytes)
	}
	go func() {
		defer close(c.started)
		start := time.Now()
		c.removeEvicted(evicted)
		c.compactDirs()
		if len(evicted) > 0 {
			c.log.Info("removed the files of the action cache entries evicted at start-up", "entries", len(evicted), "took", time.Since(start).Round(time.Millisecond))
		}
	}()
}

// compactDirs compacts the shard directories much larger than their
// entries' names need (shardBloated), each under mu while its files are
// linked.
func (c *DiskActionCache) compactDirs() {
	shards, err := os.ReadDir(c.acDir)
	if err != nil {
		return
	}
	for _, sh := range shards {
		if !sh.IsDir() {
			continue
		}
		if err := c.compactShard(filepath.Join(c.acDir, sh.Name())); err != nil {
			c.log.Warn("compact an action cache shard directory", "dir", sh.Name(), "error", err)
			return // the filesystem cannot: the others would fail alike
		}
	}
}

func (c *DiskActionCache) compactShard(dir string) error {
	c.mu.Lock()
	info, err := os.Lstat(dir)
	var names []string
	if err == nil {
		names, err = dirnames.Read(dir)
	}
	if err != nil {
		c.mu.Unlock()
		return err
	}
	keep := names[:0]
	for _, name := range names {
		if _, ok := c.set.Peek(name); ok {
			keep = append(keep, name)
		}
	}
	var old string
	if shardBloated(c.cost(info.Size()), keep, c.blockBytes) {
		old, err = swapShardDir(c.tmpDir, dir, keep)
	}
	c.mu.Unlock()
	if old != "" {
		_ = os.RemoveAll(old) // only links of entries that live on in dir
	}
	return err
}
