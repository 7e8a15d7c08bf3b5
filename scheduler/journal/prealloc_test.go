package journal

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/testdisk"
	"github.com/paddock-build/paddock/internal/testlog"
)

// needFallocate skips the test if dir's file system cannot reserve blocks
// past a file's size: the journal then runs without a reserve, which is
// not what these tests check.
func needFallocate(t *testing.T, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 4096); errors.Is(err, unix.EOPNOTSUPP) {
		t.Skipf("the test's file system does not support fallocate(FALLOC_FL_KEEP_SIZE): %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
}

// allocation returns the size of the file at path and the bytes its
// blocks take, and the file system's block size.
func allocation(t *testing.T, path string) (size, allocated, block int64) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Size, st.Blocks * 512, int64(st.Blksize)
}

// checkReserved fails unless the file at path is size bytes and has at
// least ahead bytes of blocks reserved past them.
func checkReserved(t *testing.T, path string, size, ahead int64) {
	t.Helper()
	gotSize, allocated, _ := allocation(t, path)
	if gotSize != size {
		t.Fatalf("%s is %d bytes, want %d (the bytes written: the reserve must not change the size)", filepath.Base(path), gotSize, size)
	}
	if allocated < size+ahead {
		t.Fatalf("%s: %d bytes allocated for %d bytes, want at least %d reserved past them", filepath.Base(path), allocated, size, ahead)
	}
}

// metadataSlack is what checkNoReserve allows for the file system's
// metadata, far below a reserve (preallocMargin at least).
const metadataSlack = 64 << 10

// checkNoReserve fails if the file at path has blocks past the block its
// last byte is in, give or take the file system's own metadata (st_blocks
// counts ext4's extent blocks too: a 48 MiB file showed one more block).
func checkNoReserve(t *testing.T, path string) {
	t.Helper()
	size, allocated, block := allocation(t, path)
	if limit := (size+block-1)/block*block + metadataSlack; allocated > limit {
		t.Fatalf("%s: %d bytes allocated for %d bytes, want its reserve released (at most %d)", filepath.Base(path), allocated, size, limit)
	}
}

// frameSize is the bytes rec takes in a segment.
func frameSize(rec []byte) int64 { return int64(frameHeader + len(rec)) }

// A segment has a chunk reserved as soon as it is opened for appending,
// new or recovered; its size stays the bytes written; the reserve slides
// ahead of the appends, never less than the margin past them; and Close
// gives it back.
func TestSegmentBlocksAreReservedAhead(t *testing.T) {
	dir := t.TempDir()
	needFallocate(t, dir)
	path := filepath.Join(dir, segmentName(1))
	j, _ := open(t, dir, nil)
	size := int64(len(segmentMagic))
	checkReserved(t, path, size, preallocChunk)

	big := bytes.Repeat([]byte("r"), 256<<10)
	for i := 0; size < 3*preallocChunk; i++ {
		rec := big
		if i == 0 {
			rec = record(0)
		}
		if err := j.WaitDurable(j.Append(rec)); err != nil {
			t.Fatal(err)
		}
		size += frameSize(rec)
		checkReserved(t, path, size, preallocMargin)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	checkNoReserve(t, path)

	j, _ = open(t, dir, nil)
	defer closeJournal(t, j)
	checkReserved(t, path, size, preallocChunk)
}

// Recovery reads the records written and nothing of the reserve past
// them, and a torn tail before the reserve is dropped as before: the
// first journal is left open, its reserve in place, as a crash leaves it.
func TestRecoveryIgnoresTheReserve(t *testing.T) {
	dir := t.TempDir()
	needFallocate(t, dir)
	path := filepath.Join(dir, segmentName(1))
	crashed, _ := open(t, dir, nil)
	defer func() { _ = crashed.Close() }() // stands for a crashed process: only its descriptor and writer are let go
	size := int64(len(segmentMagic))
	var last uint64
	for i := 0; i < 100; i++ {
		last = crashed.Append(record(i))
		size += frameSize(record(i))
	}
	if err := crashed.WaitDurable(last); err != nil {
		t.Fatal(err)
	}
	checkReserved(t, path, size, preallocMargin)

	torn := appendFrame(nil, record(100))[:frameHeader+3]
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(torn); err != nil {
		t.Fatal(err)
	}
	f.Close()

	j, rec := open(t, dir, nil)
	checkRecords(t, rec, 0, 100)
	if want := fmt.Sprintf("dropped %d byte(s) from byte %d, after record 100: record cut short", len(torn), size); !strings.Contains(rec.Dropped, want) {
		t.Fatalf("dropped %q, want %q", rec.Dropped, want)
	}
	checkReserved(t, path, size, preallocChunk)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, rec = open(t, dir, nil)
	defer closeJournal(t, j)
	checkRecords(t, rec, 0, 100)
	if rec.Dropped != "" {
		t.Fatalf("dropped %q after the torn tail was cut, want nothing", rec.Dropped)
	}
}

// A segment rotated out gives its reserve back (it is never appended to
// again, and lives until the snapshot after it is written); the new one
// has its own.
func TestRotatedSegmentKeepsNoReserve(t *testing.T) {
	dir := t.TempDir()
	needFallocate(t, dir)
	j, _ := open(t, dir, nil)
	defer closeJournal(t, j)
	j.Append(record(1))
	seq := j.Rotate()
	last := j.Append(record(2))
	if err := j.WaitDurable(last); err != nil {
		t.Fatal(err)
	}
	checkNoReserve(t, filepath.Join(dir, segmentName(1)))
	checkReserved(t, filepath.Join(dir, segmentName(seq+1)), int64(len(segmentMagic))+frameSize(record(2)), preallocMargin)
}

// The attack: the journal's file system fills up (here a small tmpfs,
// filled by another file) after the journal opened. Appends go on into
// the reserve, where the old journal failed at its next write; the failed
// reservations are logged once; once space is free again, the next write
// reserves again, and says so; every record is recovered.
func TestAppendsGoOnWhenTheDiskFills(t *testing.T) {
	disk := testdisk.Mount(t, 2*preallocChunk, 0)
	logs := &testlog.Buffer{}
	j, _, err := Open(Options{Dir: disk, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	testdisk.Fill(t, disk)

	// Past the margin, so that reservations are tried and fail, and within
	// the reserve.
	rec := bytes.Repeat([]byte("f"), 64<<10-frameHeader)
	n := int((preallocChunk - preallocMargin/2) / frameSize(rec))
	for i := 0; i < n; i++ {
		if err := j.WaitDurable(j.Append(rec)); err != nil {
			_ = j.Close() // fails with the same error, reported below
			t.Fatalf("append %d of %d on a full disk: %v", i+1, n, err)
		}
	}
	const failed = "cannot reserve disk space ahead of the records"
	if c := strings.Count(logs.String(), failed); c != 1 || !strings.Contains(logs.String(), "no space left on device") {
		t.Fatalf("%d log lines saying %q, want 1 naming the cause:\n%s", c, failed, logs.String())
	}

	fillers, _ := filepath.Glob(filepath.Join(disk, "filler-*"))
	for _, name := range fillers {
		if err := os.Remove(name); err != nil {
			t.Fatal(err)
		}
	}
	if err := j.WaitDurable(j.Append(rec)); err != nil {
		t.Fatal(err)
	}
	n++
	if !strings.Contains(logs.String(), "disk space reserved ahead of the records again") {
		t.Fatalf("no log line saying the reserve is back:\n%s", logs.String())
	}
	checkReserved(t, filepath.Join(disk, segmentName(1)), int64(len(segmentMagic))+int64(n)*frameSize(rec), preallocMargin)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}

	j, got := open(t, disk, nil)
	defer closeJournal(t, j)
	if len(got.Records) != n || got.Dropped != "" {
		t.Fatalf("recovered %d records (dropped %q), want %d", len(got.Records), got.Dropped, n)
	}
}
