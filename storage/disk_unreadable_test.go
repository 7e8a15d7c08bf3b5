package storage_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// makeUnreadable replaces the file at p by a symlink to itself, which no
// open follows (ELOOP), as a chmod 000 is for a server that runs without
// root's override, or a failing disk (EIO) for any.
func makeUnreadable(t *testing.T, p string) {
	t.Helper()
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(p), p); err != nil {
		t.Fatal(err)
	}
}

// TestUnreadableFilesAreDroppedNotQuoted: a CAS blob or an action cache
// entry whose file cannot be read is dropped as a corrupt one is, and
// answered NOT_FOUND, so that clients upload it again. It was UNKNOWN,
// quoting the host path, on every read, and stayed present for
// FindMissingBlobs for good.
func TestUnreadableFilesAreDroppedNotQuoted(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cas := newDisk(t, filepath.Join(dir, "cas"), 1<<20)
	data := []byte("a blob whose file goes bad")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := cas.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	makeUnreadable(t, storedPath(t, cas, d, "blob not stored"))
	_, err := storagetest.ReadAll(t, cas, d, 0)
	if status.Code(err) != codes.NotFound || strings.Contains(err.Error(), dir) {
		t.Fatalf("read of an unreadable blob: %v; want NOT_FOUND naming no host path", err)
	}
	if !missing(t, cas, d)[d] {
		t.Fatal("the unreadable blob is still reported present")
	}

	ac, err := storage.NewDiskActionCache(filepath.Join(dir, "acdir"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ac.Put(ctx, "main", d, &repb.ActionResult{ExitCode: 3}); err != nil {
		t.Fatal(err)
	}
	var entry string
	if err := filepath.WalkDir(filepath.Join(dir, "acdir", "ac"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			entry = p
		}
		return err
	}); err != nil || entry == "" {
		t.Fatalf("finding the entry's file: %v", err)
	}
	makeUnreadable(t, entry)
	for range 2 { // and stays a miss, not an error
		if _, err := ac.Get(ctx, "main", d); status.Code(err) != codes.NotFound || strings.Contains(err.Error(), dir) {
			t.Fatalf("lookup of an unreadable entry: %v; want NOT_FOUND naming no host path", err)
		}
	}
	if _, n := ac.Stats(); n != 0 {
		t.Errorf("%d entries indexed after the unreadable one was found, want 0", n)
	}
}
