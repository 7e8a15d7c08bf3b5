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

// A file mount point is made as an empty regular file, with its parent;
// an existing regular file is kept; a symlink or a directory there, or a
// parent that is a symlink, is refused and nothing is made through it.
func TestFileMountPoints(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	if err := mkfileMountPoint(root, "/etc/hosts", nil); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Lstat(filepath.Join(root, "etc/hosts")); err != nil || !st.Mode().IsRegular() || st.Size() != 0 || st.Mode().Perm() != 0o644 {
		t.Fatalf("made: %v %v; want an empty 0644 regular file", st, err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("kept"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mkfileMountPoint(root, "/etc/hosts", nil); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(root, "etc/hosts")); string(b) != "kept" {
		t.Fatalf("an existing file became %q", b)
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/link/hosts", "/link", "/dir"} {
		if err := mkfileMountPoint(root, p, nil); err == nil {
			t.Errorf("%s: made, want refused", p)
		}
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Fatalf("made %v outside the tree", ents)
	}
}
