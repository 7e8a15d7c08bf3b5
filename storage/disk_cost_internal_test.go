package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
)

func TestDiskCost(t *testing.T) {
	for _, c := range []struct {
		size, block, want int64
	}{
		{0, 4096, fileOverheadBytes}, // the empty blob's file: an inode, no block
		{1, 4096, 4096 + fileOverheadBytes},
		{64, 4096, 4096 + fileOverheadBytes},
		{4096, 4096, 4096 + fileOverheadBytes},
		{4097, 4096, 8192 + fileOverheadBytes},
		{1 << 20, 4096, 1<<20 + fileOverheadBytes},
		{1000, 512, 1024 + fileOverheadBytes},
		{-1, 4096, fileOverheadBytes}, // never asked; not negative
	} {
		if got := diskCost(c.size, c.block); got != c.want {
			t.Errorf("diskCost(%d, %d) = %d, want %d", c.size, c.block, got, c.want)
		}
	}
}

// onDisk is the number of files under dir and the bytes of disk their
// blocks take, as the filesystem counts them (st_blocks).
func onDisk(t *testing.T, dir string) (files int, bytes int64) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		files++
		bytes += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, bytes
}

// TestDiskBoundCountsBlocksNotBytes: every blob is a file, which takes
// whole blocks of the disk, so a CAS of tiny blobs stays within its bound
// on the disk, not just in the sum of the blobs' sizes. Before, 750,000
// blobs of 64 bytes counted 48 MB against a bound of 200 MiB but took
// 3.15 GB; here, 600 of them counted 38 KB against 1 MiB and took
// 2.4 MB, all kept.
func TestDiskBoundCountsBlocksNotBytes(t *testing.T) {
	const bound = 1 << 20
	dir := t.TempDir()
	s := openGated(t, dir, bound, newUnlinkGate(t))
	fill(t, s, 600, 64)
	used, n, evicted := s.Stats()
	files, taken := onDisk(t, s.casDir)
	if taken > bound {
		t.Errorf("the blobs' files take %d bytes of disk, past the bound of %d (counted: %d)", taken, bound, used)
	}
	if used < taken || used > bound {
		t.Errorf("%d bytes counted for files that take %d of disk, within a bound of %d", used, taken, bound)
	}
	if most := bound / s.blockBytes; int64(n) > most || files != n || evicted == 0 {
		t.Errorf("%d blobs indexed, %d files, %d evicted: want at most %d, one file each, the rest evicted", n, files, evicted, most)
	}
}

// TestDiskReservationIsWhatTheBlobCosts: an upload whose bytes have all
// arrived holds in flight exactly what its blob costs once stored, and
// its commit moves it from one count to the other: the total neither
// jumps at the commit nor drifts.
func TestDiskReservationIsWhatTheBlobCosts(t *testing.T) {
	dir := t.TempDir()
	s := openGated(t, dir, 1<<20, newUnlinkGate(t))
	const size = 5000 // two blocks, the second part-used
	data, d := blobN(0, size)
	gate := make(chan struct{})
	r := io.MultiReader(bytes.NewReader(data), &gatedEOF{gate: gate})
	put := make(chan error, 1)
	go func() { put <- s.Put(context.Background(), d, r) }()
	want := diskCost(size, s.blockBytes)
	pollUntil(t, "the upload reserves its blob's cost", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.inflight == want
	})
	if used, n, _ := s.Stats(); used != 0 || n != 0 {
		t.Fatalf("%d bytes in %d blobs stored before the upload is done", used, n)
	}
	close(gate)
	await(t, "the upload", put)
	s.mu.Lock()
	inflight := s.inflight
	s.mu.Unlock()
	if used, n, _ := s.Stats(); used != want || n != 1 || inflight != 0 {
		t.Fatalf("after the commit: %d bytes in %d blobs stored, %d in flight; want %d in 1, none", used, n, inflight, want)
	}
}

// gatedEOF is the end of a blob's reader: io.EOF once gate is closed.
type gatedEOF struct{ gate chan struct{} }

func (g *gatedEOF) Read([]byte) (int, error) {
	<-g.gate
	return 0, io.EOF
}

var errBrokenUpload = errors.New("the client went away")

// TestDiskUsedCountStaysConsistent: many concurrent uploads of small
// blobs of sizes around the block (some stored twice at once, some
// broken off half-way, some with bytes that do not match their digest),
// in a store that evicts most of them, leave it settled: nothing in
// flight, nothing doomed, the bytes used equal to the cost of the blobs
// indexed, within the bound, one file each; and a restart counts the
// same from the files.
func TestDiskUsedCountStaysConsistent(t *testing.T) {
	dir := t.TempDir()
	block := fsBlockBytes(dir)
	sizes := []int{1, 64, int(block) - 1, int(block), int(block) + 1, 3 * int(block), 10000}
	bound := 40 * diskCost(block, block)
	s := openGated(t, dir, bound, newUnlinkGate(t))
	const writers, each = 8, 60
	errs := make(chan error, writers*each)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				size := sizes[(w+i)%len(sizes)]
				data, d := blobN(w*each+i, size)
				var err error
				switch i % 6 {
				case 0: // stored by every writer at once
					data, d = blobN(1_000_000+i, size)
					err = s.Put(context.Background(), d, bytes.NewReader(data))
				case 1:
					err = s.Put(context.Background(), d, io.MultiReader(bytes.NewReader(data[:size/2]), iotest.ErrReader(errBrokenUpload)))
					if !errors.Is(err, errBrokenUpload) {
						err = fmt.Errorf("a broken upload of %d bytes: %v, want its reader's error", size, err)
					} else {
						err = nil
					}
				case 2:
					_, other := blobN(2_000_000+w*each+i, size)
					if err = s.Put(context.Background(), other, bytes.NewReader(data)); err == nil {
						err = fmt.Errorf("an upload whose bytes do not match its digest was stored")
					} else {
						err = nil
					}
				default:
					err = s.Put(context.Background(), d, bytes.NewReader(data))
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	s.mu.Lock()
	inflight, doomed := s.inflight, len(s.doomed)
	var sum int64
	for _, k := range s.set.Keys() {
		e, _ := s.set.Peek(k)
		sum += diskCost(e.d.SizeBytes(), block)
	}
	s.mu.Unlock()
	used, n, evicted := s.Stats()
	if inflight != 0 || doomed != 0 {
		t.Errorf("settled, %d bytes are still in flight and %d files doomed; want none", inflight, doomed)
	}
	if used != sum || used > bound || evicted == 0 {
		t.Errorf("%d bytes used, %d the sum over the index, bound %d, %d evicted; want the sum, within the bound, some evicted", used, sum, bound, evicted)
	}
	files, taken := onDisk(t, s.casDir)
	if files != n || taken > used {
		t.Errorf("%d files taking %d bytes of disk for %d blobs counted at %d", files, taken, n, used)
	}
	if tmp, _ := os.ReadDir(s.tmpDir); len(tmp) != 0 {
		t.Errorf("%d files left in tmp/", len(tmp))
	}

	s2 := openGated(t, dir, bound, newUnlinkGate(t))
	if used2, n2, _ := s2.Stats(); used2 != used || n2 != n {
		t.Errorf("a restart counts %d bytes in %d blobs, the store before it %d in %d", used2, n2, used, n)
	}
}
