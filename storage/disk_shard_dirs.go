package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/dirnames"
)

// A DiskBlobStore's shard directories grow back to what their names
// need after many of their blobs are removed.
//
// A directory on ext4 (and XFS) grows as names are added and never
// shrinks when they are removed. A store of 20,000 blobs reopened with a
// fifth of the bound evicted 16,000 of them, its files came within the
// bound, but its 256 shard directories still took 3 MiB, 18% over it,
// for good: the operators saw "shard dirs never shrink". So after
// start-up's eviction, in the background, the store compacts each shard
// directory that takes more than a block and more than twice what its
// names need: its blobs' files are hard-linked into a fresh directory
// under tmp/, which then takes the old one's place in one rename
// (RENAME_EXCHANGE), and the old one is removed. A file keeps its inode
// throughout, so a reader that holds it open, or a link the worker made,
// is untouched; and the blob's path always names a directory that holds
// it. The directories are not counted against MaxBytes (a store of tiny
// bounds would hold nothing): compacted, each takes about one block and
// an inode, 1.1 MiB for the 256 shards of a digest function.
// direntBytes is what a name of n bytes takes in an ext4 directory block
// (an 8-byte header and the name, rounded to 4 bytes).
func direntBytes(n int) int64 { return int64(8+n+3) &^ 3 }

// dirCost is what the directory at p costs against MaxBytes, 0 if it
// cannot be read.
func (s *DiskBlobStore) dirCost(p string) int64 {
	info, err := os.Lstat(p)
	if err != nil || !info.IsDir() {
		return 0
	}
	return s.cost(info.Size())
}

// compactDirs compacts the shard directories that take much more than
// their names need. It runs in the background after start-up's eviction;
// each shard holds mu only while its own files are linked.
func (s *DiskBlobStore) compactDirs() {
	start := time.Now()
	var compacted int
	var freed int64
	for _, fn := range digest.Supported {
		fnDir := filepath.Join(s.casDir, strings.ToLower(fn.String()))
		shards, err := os.ReadDir(fnDir)
		if err != nil {
			continue
		}
		for _, sh := range shards {
			if !sh.IsDir() {
				continue
			}
			f, err := s.compactShard(fn, filepath.Join(fnDir, sh.Name()))
			if err != nil {
				s.log.Warn("compact a CAS shard directory", "dir", sh.Name(), "error", err)
				return // the filesystem cannot: the others would fail alike
			}
			if f > 0 {
				compacted, freed = compacted+1, freed+f
			}
		}
	}
	if compacted > 0 {
		s.log.Info("compacted the CAS's shard directories left large by removed blobs",
			"dirs", compacted, "bytes", freed, "took", time.Since(start).Round(time.Millisecond))
	}
}

// compactShard replaces dir by a fresh copy holding links to its indexed
// blobs, if it needs compacting (shardBloated), and returns the bytes of
// disk (diskCost) that freed.
func (s *DiskBlobStore) compactShard(fn digest.Function, dir string) (freed int64, err error) {
	s.mu.Lock()
	before := s.dirCost(dir)
	names, err := dirnames.Read(dir)
	if err != nil {
		s.mu.Unlock()
		return 0, err
	}
	var keep []string
	for _, name := range names {
		if e, ok := s.set.Peek(blobKey{fn, name}); ok && e.d.Hash() == name {
			keep = append(keep, name)
		}
	}
	if !shardBloated(before, keep, s.blockBytes) {
		s.mu.Unlock()
		return 0, nil
	}
	old, err := swapShardDir(s.tmpDir, dir, keep)
	if err == nil {
		freed = before - s.dirCost(dir)
	}
	s.mu.Unlock()
	if old != "" {
		_ = os.RemoveAll(old) // only links of blobs that live on in dir
	}
	return freed, err
}

// shardBloated reports whether a shard directory costing cost, whose
// entries to keep are names, is worth compacting: it takes more than a
// block and more than twice what a fresh directory of those names would.
// It is pure.
func shardBloated(cost int64, names []string, blockBytes int64) bool {
	var need int64
	for _, n := range names {
		need += direntBytes(len(n))
	}
	return cost > diskCost(blockBytes, blockBytes) && cost > 2*diskCost(need, blockBytes)
}

// swapShardDir links the files names of dir into a fresh directory under
// tmpDir and exchanges the two; it returns the path the old directory
// now has, to be removed ("" if none was made). The caller keeps the
// files of dir from changing meanwhile (its store's lock), so that no
// file stored, evicted or removed as corrupt is lost or brought back.
func swapShardDir(tmpDir, dir string, names []string) (old string, err error) {
	fresh, err := os.MkdirTemp(tmpDir, "shard-")
	if err != nil {
		return "", fmt.Errorf("make a fresh shard directory: %w", err)
	}
	for _, name := range names {
		if err := os.Link(filepath.Join(dir, name), filepath.Join(fresh, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fresh, fmt.Errorf("link %s into a fresh shard directory: %w", name, err)
		}
	}
	if err := unix.Renameat2(unix.AT_FDCWD, fresh, unix.AT_FDCWD, dir, unix.RENAME_EXCHANGE); err != nil {
		return fresh, fmt.Errorf("exchange %s with its compacted copy: %w", dir, err)
	}
	return fresh, nil
}

// openBlob opens blob d's file. An open whose path was resolved into a
// shard directory that compactShard then swapped out and emptied fails
// with ENOENT though the blob is there, and Get would forget it, removing
// the file from the new directory too. No directory is swapped while mu
// is held, so such a failure is tried once more under it before the blob
// is taken for gone.
func (s *DiskBlobStore) openBlob(d digest.Digest) (*os.File, error) {
	f, err := os.Open(s.path(d))
	if errors.Is(err, fs.ErrNotExist) {
		s.mu.Lock()
		f, err = os.Open(s.path(d))
		s.mu.Unlock()
	}
	return f, err
}
