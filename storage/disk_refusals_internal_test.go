package storage

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/testdisk"
)

// TestDiskFullWriteIsCountedAndSaidWhole: a write the filesystem refuses
// with ENOSPC (the disk filled between the store's check of its room and
// the write: another process's) is counted as disk_full, and its message
// names the blob and the errno, no host path.
func TestDiskFullWriteIsCountedAndSaidWhole(t *testing.T) {
	dir := testdisk.Mount(t, 8<<20, 10000)
	s, err := NewDiskBlobStore(DiskOptions{Dir: dir, MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	testdisk.Fill(t, dir)
	f, err := os.Create(filepath.Join(dir, "one-more"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, enospc := f.Write(make([]byte, 64<<10))
	if !errors.Is(enospc, syscall.ENOSPC) {
		t.Fatalf("a write to the full filesystem: %v, want ENOSPC", enospc)
	}
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte("refused"))
	got := s.writeFailed(&reservation{d: d}, &os.PathError{Op: "write", Path: f.Name(), Err: enospc})
	msg := status.Convert(got).Message()
	t.Logf("%v %s", status.Code(got), msg)
	if status.Code(got) != codes.ResourceExhausted || !strings.Contains(msg, "blob "+d.String()+" not stored: the CAS's disk is full (no space left on device)") || strings.Contains(msg, dir) {
		t.Fatalf("the refusal: %v %q; want RESOURCE_EXHAUSTED naming the blob and ENOSPC, and no host path", status.Code(got), msg)
	}
	if n := s.refusals[refusedDiskFull].Load(); n != 1 {
		t.Fatalf("disk_full refusals: %v, want 1", n)
	}
}
