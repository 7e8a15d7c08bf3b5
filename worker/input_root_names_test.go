package worker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// namesHarness is an input root builder over an in-memory CAS whose
// file cache holds at most maxBytes.
type namesHarness struct {
	cas   *storage.MemoryBlobStore
	files *FileCache
	b     *inputRootBuilder
}

func newNamesHarness(t *testing.T, maxBytes int64) *namesHarness {
	t.Helper()
	cas := storage.NewMemoryBlobStore()
	files, err := NewFileCache(FileCacheOptions{Dir: filepath.Join(t.TempDir(), "files"), CAS: cas, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	b := &inputRootBuilder{cas: cas, files: files, dirs: newDirectoryCache(defaultDirectoryCacheBytes), parallelism: 8, limits: InputLimits{}.withDefaults()}
	return &namesHarness{cas, files, b}
}

func (h *namesHarness) put(t *testing.T, data []byte) digest.Digest {
	t.Helper()
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := h.cas.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

func (h *namesHarness) putDir(t *testing.T, dir *repb.Directory) digest.Digest {
	t.Helper()
	b, err := proto.Marshal(dir)
	if err != nil {
		t.Fatal(err)
	}
	return h.put(t, b)
}

// TestInputLargerThanTheCacheNamedManyTimes: an input larger than the
// whole file cache, named 8 times in one root (as an executable and not),
// is linked from one file for each mode, and not kept once the root is
// built. Dropped after its first link, it was fetched again for every
// other name (8 uncounted copies), and names linked at the same time
// found its file gone: the action failed INTERNAL ("file cache: no such
// file or directory").
func TestInputLargerThanTheCacheNamedManyTimes(t *testing.T) {
	h := newNamesHarness(t, 64<<10)
	big := h.put(t, bytes.Repeat([]byte{'b'}, 100<<10))
	root := &repb.Directory{}
	for i := range 16 {
		root.Files = append(root.Files, &repb.FileNode{Name: fmt.Sprintf("f%02d", i), Digest: big.Proto(), IsExecutable: i%2 == 0})
	}
	dst := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if n, err := h.b.build(context.Background(), repb.DigestFunction_SHA256, h.putDir(t, root), dst); err != nil || n != 16 {
		t.Fatalf("build: %d files, %v", n, err)
	}
	inodes := map[bool]map[uint64]bool{false: {}, true: {}}
	for i := range 16 {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(dst, fmt.Sprintf("f%02d", i)), &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != big.SizeBytes() {
			t.Fatalf("f%02d has %d bytes", i, st.Size)
		}
		inodes[i%2 == 0][st.Ino] = true
	}
	if len(inodes[true]) != 1 || len(inodes[false]) != 1 {
		t.Errorf("8 executable names link %d files and 8 others %d, want 1 each", len(inodes[true]), len(inodes[false]))
	}
	if kept, n := h.files.Stats(); kept != 0 || n != 0 {
		t.Errorf("the cache keeps %d files of %d bytes once the root is built, want none (each is larger than the cache)", n, kept)
	}
}

// TestInputPathPastPathMaxIsInvalid: a file whose path in the build
// directory is longer than the kernel's PATH_MAX is the client's error,
// INVALID_ARGUMENT naming it, as a directory's is, and nothing is
// fetched for it; link(2) refused it INTERNAL, after the fetch.
func TestInputPathPastPathMaxIsInvalid(t *testing.T) {
	h := newNamesHarness(t, 0)
	blob := h.put(t, []byte("deep"))
	dst := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	// Directories whose path stays under PATH_MAX, and a file in the
	// deepest whose path does not.
	var names []string
	length := len(dst)
	for length+1+200 < unix.PathMax-200 {
		names = append(names, strings.Repeat("d", 200))
		length += 201
	}
	names = append(names, strings.Repeat("e", unix.PathMax-200-length-1))
	dir := h.putDir(t, &repb.Directory{Files: []*repb.FileNode{{Name: strings.Repeat("f", 255), Digest: blob.Proto()}}})
	for i := len(names) - 1; i >= 0; i-- {
		dir = h.putDir(t, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: names[i], Digest: dir.Proto()}}})
	}
	_, err := h.b.build(context.Background(), repb.DigestFunction_SHA256, dir, dst)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "input root: file") || !strings.Contains(st.Message(), "too long") {
		t.Fatalf("build: %v; want INVALID_ARGUMENT naming the file whose path is too long", err)
	}
	if _, fetched := h.files.Counts(); fetched != 0 {
		t.Errorf("%d files were fetched for a root refused", fetched)
	}
}
