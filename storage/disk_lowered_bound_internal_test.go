package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// costOnDisk is what the regular files under dir cost and what its
// directories do, each counted as diskCost counts a blob's (its size in
// whole blocks and an inode), and how many directories there are.
func costOnDisk(t *testing.T, dir string) (files, dirs int64, ndirs int) {
	t.Helper()
	block := fsBlockBytes(dir)
	err := filepath.WalkDir(dir, func(p string, de fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed while the walk went on
		}
		if err != nil {
			return err
		}
		info, err := de.Info()
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if de.IsDir() {
			dirs += diskCost(info.Size(), block)
			ndirs++
		} else {
			files += diskCost(info.Size(), block)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, dirs, ndirs
}

// TestDiskLoweredBoundShrinksTheStore: a store reopened with a fifth of
// the bound it was filled under comes within it on the disk (its blobs'
// files within the bound, each directory back to a block), and still
// serves the most recently used blobs it kept. Before, its files came
// within the bound but the 256 shard directories, grown for 20,000
// names, kept 3 MiB, 18% over it, for good.
func TestDiskLoweredBoundShrinksTheStore(t *testing.T) {
	const n, size = 20000, 10
	dir := t.TempDir()
	s0, err := NewDiskBlobStore(DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	data, ds := fill(t, s0, n, size)
	<-s0.started
	// Ages in the order stored (the clock's ticks are coarser than a Put).
	base := time.Now().Add(-time.Hour)
	for i, d := range ds {
		at := base.Add(time.Duration(i) * time.Millisecond)
		if err := os.Chtimes(s0.path(d), at, at); err != nil {
			t.Fatal(err)
		}
	}
	before, _, _ := costOnDisk(t, dir)
	bound := before / 5
	var s *DiskBlobStore
	within(t, "opening the store with a lower bound", func() (err error) {
		s, err = NewDiskBlobStore(DiskOptions{Dir: dir, MaxBytes: bound})
		return err
	})
	block := fsBlockBytes(dir)
	var files, dirs int64
	var ndirs int
	pollUntil(t, "the store comes within its lowered bound on the disk", func() bool {
		files, dirs, ndirs = costOnDisk(t, dir)
		return files <= bound && dirs <= int64(ndirs)*diskCost(block, block)
	})
	used, blobs, _ := s.Stats()
	t.Logf("filled: %d; bound %d; on disk: files %d, %d directories %d; index: %d bytes in %d blobs", before, bound, files, ndirs, dirs, used, blobs)
	if blobs < n/10 {
		t.Fatalf("the store kept %d blobs of %d; want most of what fits in a fifth", blobs, n)
	}
	for i := n - blobs; i < n; i++ {
		if err := readEquals(s, ds[i], data[i]); err != nil {
			t.Fatalf("blob %d, among the newest %d kept: %v", i, blobs, err)
		}
	}
	if m := missingOf(t, s, ds[n-blobs-1]); len(m) != 1 {
		t.Fatalf("blob %d, older than those kept, is still present", n-blobs-1)
	}
}
