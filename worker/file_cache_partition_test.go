package worker_test

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// TestFileCachePartitions: with PartitionOf, one input linked for actions
// of two partitions comes from two cache files, each linked once from the
// cache (link count 2), so no input root shares a file with another
// partition's; and a shared CAS directory (Local) is refused with it.
func TestFileCachePartitions(t *testing.T) {
	dir := t.TempDir()
	cas := storage.NewMemoryBlobStore()
	data := "one input, two tenants"
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte(data))
	if err := cas.Put(context.Background(), d, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	byTenant := func(instance string) string { first, _, _ := strings.Cut(instance, "/"); return first }
	files, err := worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas, PartitionOf: byTenant})
	if err != nil {
		t.Fatal(err)
	}
	stat := func(p string) syscall.Stat_t {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	var got []syscall.Stat_t
	for _, instance := range []string{"a/x", "b/y"} {
		dst := filepath.Join(dir, strings.ReplaceAll(instance, "/", "-"))
		if err := files.Link(storage.WithInstance(context.Background(), instance), d, false, dst); err != nil {
			t.Fatal(err)
		}
		got = append(got, stat(dst))
	}
	if got[0].Ino == got[1].Ino {
		t.Errorf("partitions a and b share inode %d", got[0].Ino)
	}
	for i, st := range got {
		if st.Nlink != 2 {
			t.Errorf("link %d has %d links, want 2 (its partition's cache file and itself)", i, st.Nlink)
		}
	}
	if _, err := worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "f2"), CAS: cas, PartitionOf: byTenant, Local: &storage.DiskBlobStore{}}); err == nil {
		t.Error("a file cache with both PartitionOf and Local was accepted")
	}
}
