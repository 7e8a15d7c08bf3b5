package storage_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

func inode(t *testing.T, p string) (ino uint64, links uint64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino, st.Nlink
}

// TestAdoptLinksTheFileItself: Adopt stores a file by linking it (the
// same inode, not a copy), counted like a blob Put; a blob stored already
// is not linked again; a blob larger than the store is refused as Put
// refuses it; a file on another filesystem is ErrCannotAdopt.
func TestAdoptLinksTheFileItself(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, filepath.Join(dir, "cas"), 1<<20)
	data := []byte("an output of an action")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	p := filepath.Join(dir, "out")
	if err := os.WriteFile(p, data, 0o444); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Adopt(context.Background(), d, f); err != nil {
		t.Fatal(err)
	}
	cp, ok := s.Path(d)
	if !ok {
		t.Fatal("adopted blob not in the store")
	}
	if a, _ := inode(t, p); func() uint64 { b, _ := inode(t, cp); return b }() != a {
		t.Error("the store holds a copy, not the file")
	}
	if got, err := storagetest.ReadAll(t, s, d, 0); err != nil || string(got) != string(data) {
		t.Errorf("read %q, %v", got, err)
	}
	if used, n, _ := s.Stats(); n != 1 || used != storage.DiskCostIn(filepath.Join(dir, "cas"), d.SizeBytes()) {
		t.Errorf("stats %d bytes, %d blobs; want one blob at its cost", used, n)
	}
	// Stored already: not linked again.
	if err := s.Adopt(context.Background(), d, f); err != nil {
		t.Fatal(err)
	}
	if _, links := inode(t, p); links != 2 {
		t.Errorf("%d links after a second Adopt, want 2", links)
	}

	big := digest.FromBytes(repb.DigestFunction_SHA256, make([]byte, 2<<20))
	if err := s.Adopt(context.Background(), big, f); status.Code(err) != codes.InvalidArgument || !errors.Is(err, storage.ErrLargerThanStore) {
		t.Errorf("Adopt of a blob larger than the store: %v", err)
	}

	shm, err := os.MkdirTemp("/dev/shm", "adopt-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(shm)
	other := []byte("on another filesystem")
	if err := os.WriteFile(filepath.Join(shm, "out"), other, 0o444); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(filepath.Join(shm, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	od := digest.FromBytes(repb.DigestFunction_SHA256, other)
	var fs1, fs2 syscall.Statfs_t
	if syscall.Statfs(shm, &fs1) == nil && syscall.Statfs(dir, &fs2) == nil && fs1.Fsid == fs2.Fsid {
		t.Skip("/dev/shm and the test's directory share a filesystem")
	}
	if err := s.Adopt(context.Background(), od, g); !errors.Is(err, storage.ErrCannotAdopt) {
		t.Errorf("Adopt across filesystems: %v, want ErrCannotAdopt", err)
	}
	if _, ok := s.Path(od); ok {
		t.Error("a blob that could not be adopted is in the store")
	}
	if used, n, _ := s.Stats(); n != 1 || used != storage.DiskCostIn(filepath.Join(dir, "cas"), d.SizeBytes()) {
		t.Errorf("after a refused Adopt: %d bytes, %d blobs still counted", used, n)
	}
}
