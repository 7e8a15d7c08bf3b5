package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// Actions' mount points stay in the image's shared tree, so what they may
// add there is bounded: past maxMountPointDirs new directories, for every
// hold on the image together, MkdirMountPoint refuses, naming the bound,
// and makes nothing; a path made before, or one the image has, is still
// fine. Before, every distinct InputRootAbsolutePath added its directories
// for good, uncounted.
func TestMountPointsInTheSharedTreeAreBounded(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "tools/bb:1", busyboxImage(t, "one"))
	c := newTestCache(t, t.TempDir(), r, nil)
	hold := func() *Rootfs {
		rf, err := c.Rootfs(context.Background(), r.ref(t, "tools/bb:1"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rf.Release)
		return rf
	}
	a, b := hold(), hold()
	for i := range maxMountPointDirs / 2 {
		if err := a.MkdirMountPoint("/m/" + strconv.Itoa(i)); err != nil {
			t.Fatalf("mount point %d: %v", i, err)
		}
	}
	// "/m" itself was one: the other hold has the rest but one.
	for i := maxMountPointDirs / 2; i < maxMountPointDirs-1; i++ {
		if err := b.MkdirMountPoint("/m/" + strconv.Itoa(i)); err != nil {
			t.Fatalf("mount point %d: %v", i, err)
		}
	}
	err := a.MkdirMountPoint("/m/one-too-many")
	if !errors.Is(err, errTooManyMountPoints) {
		t.Fatalf("past the bound: %v, want %v", err, errTooManyMountPoints)
	}
	if _, err := os.Lstat(filepath.Join(a.Path, "m/one-too-many")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the refused mount point was made: %v", err)
	}
	for _, p := range []string{"/m/7", "/etc", "/bin"} {
		if err := b.MkdirMountPoint(p); err != nil {
			t.Errorf("%s, which the tree has: %v", p, err)
		}
	}
}
