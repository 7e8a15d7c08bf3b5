package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/testdisk"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/storage"
)

func freeRoom(t *testing.T, dir string) (bytes, inodes uint64) {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return st.Bavail * uint64(st.Bsize), st.Ffree
}

// blobOf is a blob of n bytes, different for each i.
func blobOf(i, n int) ([]byte, digest.Digest) {
	b := bytes.Repeat([]byte(fmt.Sprintf("%08d", i)), n/8)
	return b, digest.FromBytes(repb.DigestFunction_SHA256, b)
}

// TestDiskCASKeepsItsFilesystemFree: a CAS whose bound is larger than its
// disk evicts to keep part of the disk free, in bytes and in inodes, so
// uploads go on succeeding and the rest of the farm (journal, action
// cache, input roots) can still write. Before, the first upload past the
// disk's size and every one after it were RESOURCE_EXHAUSTED, for good.
func TestDiskCASKeepsItsFilesystemFree(t *testing.T) {
	ctx := context.Background()
	t.Run("bytes", func(t *testing.T) {
		dir := testdisk.Mount(t, 8<<20, 10000)
		var log testlog.Buffer
		s, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir, MaxBytes: 1 << 30, Logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 40 { // 20 MiB through an 8 MiB disk
			b, d := blobOf(i, 512<<10)
			if err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
				t.Fatalf("upload %d: %v", i, err)
			}
			if free, _ := freeRoom(t, dir); free < 1<<20 {
				t.Fatalf("after upload %d only %d bytes are free, want the 1 MiB headroom", i, free)
			}
		}
		_, last := blobOf(39, 512<<10)
		if m := missing(t, s, last); m[last] {
			t.Fatal("the last blob uploaded is missing")
		}
		// Every upload past the disk evicts; that is said once a minute
		// (each wrote a line).
		if n := strings.Count(log.String(), "nearly full"); n != 1 {
			t.Fatalf("evictions to keep the disk free logged %d times in 40 uploads, want once:\n%s", n, log.String())
		}
	})
	t.Run("inodes", func(t *testing.T) {
		dir := testdisk.Mount(t, 64<<20, 1000)
		s := newDisk(t, dir, 1<<30)
		for i := range 3000 {
			b, d := blobOf(i, 64)
			if err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
				t.Fatalf("upload %d: %v", i, err)
			}
		}
		if _, inodes := freeRoom(t, dir); inodes < 64 {
			t.Fatalf("%d inodes free, want the headroom of 64", inodes)
		}
	})
}

// TestDiskCASRestartsOnAFullDisk: a CAS opened on a disk something else
// filled makes room at start-up, by evicting its least recently used
// blobs, so the farm can start (an inode-full disk kept the runner from
// making its socket) and the action cache can write again.
func TestDiskCASRestartsOnAFullDisk(t *testing.T) {
	ctx := context.Background()
	dir := testdisk.Mount(t, 8<<20, 10000)
	s := newDisk(t, dir, 1<<30)
	for i := range 8 {
		b, d := blobOf(i, 512<<10)
		if err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
	}
	testdisk.Fill(t, dir)
	ac, err := storage.NewDiskActionCache(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = ac.Put(ctx, "main", sha("action"), &repb.ActionResult{StdoutRaw: make([]byte, 64<<10)})
	if status.Code(err) != codes.ResourceExhausted || strings.Contains(status.Convert(err).Message(), dir) {
		t.Fatalf("action cache write on a full disk: %v; want RESOURCE_EXHAUSTED naming no host path", err)
	}
	s = newDisk(t, dir, 1<<30)
	if free, _ := freeRoom(t, dir); free < 1<<20 {
		t.Fatalf("after a restart on a full disk %d bytes are free, want the 1 MiB headroom", free)
	}
	if err := ac.Put(ctx, "main", sha("action"), &repb.ActionResult{StdoutRaw: make([]byte, 64<<10)}); err != nil {
		t.Fatalf("action cache write after the CAS made room: %v", err)
	}
	if _, n, _ := s.Stats(); n == 0 || n == 8 {
		t.Fatalf("%d blobs kept; want some evicted and the rest kept", n)
	}
}

// TestDiskCASLeavesTheHeadroomToOthers: when other files fill the disk so
// that evicting cannot keep the headroom free, an upload is refused with
// RESOURCE_EXHAUSTED before anything is written (it wrote until ENOSPC,
// taking the last of the disk from the journal and the actions), and the
// warning is not repeated for every upload.
func TestDiskCASLeavesTheHeadroomToOthers(t *testing.T) {
	ctx := context.Background()
	dir := testdisk.Mount(t, 8<<20, 10000)
	var log testlog.Buffer
	s, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir, MaxBytes: 1 << 30, Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	// Others' files, nothing the CAS could evict, leave 512 KiB free: room
	// for the blobs, not for them and the 1 MiB headroom.
	testdisk.Fill(t, dir)
	fillers, _ := filepath.Glob(filepath.Join(dir, "filler-*"))
	if len(fillers) != 1 {
		t.Fatalf("fillers %v", fillers)
	}
	info, err := os.Stat(fillers[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(fillers[0], info.Size()-512<<10); err != nil {
		t.Fatal(err)
	}
	freeBefore, _ := freeRoom(t, dir)
	for i := range 20 {
		b, d := blobOf(i, 8<<10)
		err := s.Put(ctx, d, bytes.NewReader(b))
		if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "full") || strings.Contains(status.Convert(err).Message(), dir) {
			t.Fatalf("upload %d with the disk full of other files: %v; want RESOURCE_EXHAUSTED saying the disk is full, naming no path", i, err)
		}
	}
	if free, _ := freeRoom(t, dir); free < freeBefore || freeBefore < 256<<10 {
		t.Fatalf("refused uploads still took %d bytes of the disk", freeBefore-free)
	}
	if n := strings.Count(log.String(), "refusing uploads"); n != 1 {
		t.Fatalf("the full disk was logged %d times for 20 uploads, want once:\n%s", n, log.String())
	}
}

// TestAdoptTakesNoRoomOnTheDisk: an output adopted (linked) into the CAS
// takes no room on its filesystem, so it is stored, and nothing evicted,
// while the disk keeps its headroom free. makeRoom asked statfs for the
// blob's size beside the headroom, as for a new file: a 30 MB output on
// a 64 MiB disk with 9 MB free was refused RESOURCE_EXHAUSTED after every
// stored blob had been evicted for it.
func TestAdoptTakesNoRoomOnTheDisk(t *testing.T) {
	ctx := context.Background()
	disk := testdisk.Mount(t, 16<<20, 10000)
	s, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(disk, "cas"), MaxBytes: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	var stored []digest.Digest
	for i := range 4 {
		b, d := blobOf(i, 1<<20)
		if err := s.Put(ctx, d, bytes.NewReader(b)); err != nil {
			t.Fatal(err)
		}
		stored = append(stored, d)
	}
	out, d := blobOf(100, 9<<20) // leaves about 2 MiB free: above the 1 MiB headroom, below the output's size
	p := filepath.Join(disk, "out")
	if err := os.WriteFile(p, out, 0o444); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Adopt(ctx, d, f); err != nil {
		t.Fatalf("Adopt of an output that takes no more room: %v", err)
	}
	if m := missing(t, s, append(stored, d)...); len(m) > 0 {
		t.Fatalf("after the Adopt, %d of the blobs are missing: %v", len(m), m)
	}
}
