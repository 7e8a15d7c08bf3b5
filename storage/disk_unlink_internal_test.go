package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/testlog"
)

// These tests hold the removal of chosen evicted files (unlinkGate, the
// store's remove function) to act while an eviction is half-done: the
// blobs out of the index, their files still on disk.

// testDeadline bounds the wait for what takes milliseconds. Reaching it
// is how a test fails (a call waited for a held removal), never how one
// passes.
const testDeadline = 10 * time.Second

// unlinkGate removes files as os.Remove does, except that it holds back
// the removal of the paths it is told to hold until release is closed,
// and reports each removal it holds on held.
type unlinkGate struct {
	mu      sync.Mutex
	holding map[string]bool
	held    chan string
	release chan struct{}
	once    sync.Once
}

func newUnlinkGate(t *testing.T) *unlinkGate {
	g := &unlinkGate{holding: map[string]bool{}, held: make(chan string, 16), release: make(chan struct{})}
	t.Cleanup(g.open) // a failed test leaves no remover blocked
	return g
}

// hold has the removal of paths held.
func (g *unlinkGate) hold(paths ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, p := range paths {
		g.holding[p] = true
	}
}

func (g *unlinkGate) remove(p string) error {
	g.mu.Lock()
	hold := g.holding[p]
	g.mu.Unlock()
	if hold {
		select {
		case <-g.release: // open: nothing is held any more
		default:
			g.held <- p
			<-g.release
		}
	}
	return os.Remove(p)
}

// open lets held removals, and all later ones, go on.
func (g *unlinkGate) open() { g.once.Do(func() { close(g.release) }) }

// nextHeld waits for a held removal to begin and returns its path.
func (g *unlinkGate) nextHeld(t *testing.T) string {
	t.Helper()
	select {
	case p := <-g.held:
		return p
	case <-time.After(testDeadline):
		t.Fatal("no removal of an evicted file was held")
		return ""
	}
}

// within fails the test unless f returns, without error, before
// testDeadline: f must not wait for a held removal.
func within(t *testing.T, what string, f func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(testDeadline):
		t.Fatalf("%s did not return while the removal of an evicted file was held: it waited for it", what)
	}
}

// await waits for a Put started by goPut and fails the test on its error.
func await(t *testing.T, what string, errc <-chan error) {
	t.Helper()
	within(t, what, func() error { return <-errc })
}

// goPut starts a Put of data as d and returns where its error will be.
func goPut(s *DiskBlobStore, d digest.Digest, data []byte) <-chan error {
	errc := make(chan error, 1)
	go func() { errc <- s.Put(context.Background(), d, bytes.NewReader(data)) }()
	return errc
}

// pollUntil polls cond until it holds, failing the test at testDeadline.
func pollUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(testDeadline); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// blobN is the i-th of distinct blobs of size bytes.
func blobN(i, size int) ([]byte, digest.Digest) {
	b := []byte(fmt.Sprintf("%0*d", size, i))
	return b, digest.FromBytes(repb.DigestFunction_SHA256, b)
}

// fill stores n blobs of size bytes, oldest first, and returns them.
func fill(t *testing.T, s *DiskBlobStore, n, size int) ([][]byte, []digest.Digest) {
	t.Helper()
	var data [][]byte
	var ds []digest.Digest
	for i := range n {
		b, d := blobN(i, size)
		if err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
			t.Fatalf("store blob %d: %v", i, err)
		}
		data, ds = append(data, b), append(ds, d)
	}
	return data, ds
}

// readEquals reads d from s and compares it with want.
func readEquals(s *DiskBlobStore, d digest.Digest, want []byte) error {
	r, err := s.Get(context.Background(), d, 0)
	if err != nil {
		return fmt.Errorf("read %s: %w", d, err)
	}
	defer r.Close()
	got, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(got, want) {
		return fmt.Errorf("read %s: %d bytes, %v; want its %d bytes", d, len(got), err, len(want))
	}
	return nil
}

// missingOf is FindMissing, within testDeadline.
func missingOf(t *testing.T, s *DiskBlobStore, ds ...digest.Digest) []digest.Digest {
	t.Helper()
	var m []digest.Digest
	within(t, "FindMissing", func() (err error) {
		m, err = s.FindMissing(context.Background(), ds)
		return err
	})
	return m
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func openGated(t *testing.T, dir string, maxBytes int64, gate *unlinkGate) *DiskBlobStore {
	t.Helper()
	s, err := newDiskBlobStore(DiskOptions{Dir: dir, MaxBytes: maxBytes}, gate.remove)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestDiskEvictionDoesNotHoldTheStore: a Put that evicts many blobs takes
// them out of the index at once and removes their files with the store's
// lock released, so FindMissing, reads and other Puts go on meanwhile,
// and the evicted blobs are NOT_FOUND from the start. Before, each file
// was removed under the lock: a 60 MiB upload that evicted 200,000 tiny
// blobs froze every call of the store for 1m42s.
func TestDiskEvictionDoesNotHoldTheStore(t *testing.T) {
	const n, size = 2000, 256
	// The bound holds the blobs and three more: the big Put's first
	// write (the reservation grows as its bytes arrive) evicts the oldest
	// blobs, fewer than all.
	dir := t.TempDir()
	bound := (n + 3) * diskCost(size, fsBlockBytes(dir))
	gate := newUnlinkGate(t)
	s := openGated(t, dir, bound, gate)
	data, ds := fill(t, s, n, size)
	gate.hold(s.path(ds[0]))
	big, bigD := blobN(n, 300<<10)
	bigPut := goPut(s, bigD, big)
	gate.nextHeld(t)

	m := missingOf(t, s, ds...)
	evicted := len(m)
	if evicted == 0 || evicted > n-2 {
		t.Fatalf("%d of %d blobs missing while the eviction is held; want the oldest, fewer than all", evicted, n)
	}
	for i, d := range m {
		if d != ds[i] {
			t.Fatalf("blob %d of %d is missing while the eviction is held; want the %d oldest", slices.Index(ds, d), n, evicted)
		}
	}
	if !fileExists(s.path(ds[0])) || !fileExists(s.path(ds[evicted-1])) {
		t.Fatal("evicted files are gone already: the test needs their removal pending")
	}
	within(t, "Get of an evicted blob", func() error {
		if _, err := s.Get(context.Background(), ds[0], 0); status.Code(err) != codes.NotFound {
			return fmt.Errorf("got %v, want NOT_FOUND", err)
		}
		return nil
	})
	within(t, "Get of a stored blob", func() error { return readEquals(s, ds[n-1], data[n-1]) })
	within(t, "Path of a stored blob", func() error {
		if _, ok := s.Path(ds[n-2]); !ok {
			return fmt.Errorf("not found")
		}
		return nil
	})
	other, otherD := blobN(n+1, size)
	within(t, "another Put", func() error { return s.Put(context.Background(), otherD, bytes.NewReader(other)) })

	gate.open()
	await(t, "the evicting Put", bigPut)
	for i := range evicted {
		if fileExists(s.path(ds[i])) {
			t.Fatalf("the file of evicted blob %d is still there after the Put that evicted it", i)
		}
	}
	if err := readEquals(s, bigD, big); err != nil {
		t.Fatal(err)
	}
	if used, _, _ := s.Stats(); used > bound {
		t.Fatalf("%d bytes stored, past the bound of %d", used, bound)
	}
}

// TestDiskPutOfABlobWhoseEvictionIsPending: a blob evicted whose file is
// still to be removed can be stored again. A removal not begun is
// cancelled (the Put does not wait for the eviction's other removals); one
// in progress is waited for, and the blob is missing meanwhile. Either
// way the new file survives the eviction, and the blob reads back whole.
func TestDiskPutOfABlobWhoseEvictionIsPending(t *testing.T) {
	// 32 blobs of 128 bytes fill the bound; the evicting Put's first
	// write (eight blocks) evicts the oldest, several, in that order.
	const n, size = 32, 128
	setup := func(t *testing.T) (*DiskBlobStore, *unlinkGate, [][]byte, []digest.Digest, <-chan error) {
		dir := t.TempDir()
		gate := newUnlinkGate(t)
		s := openGated(t, dir, n*diskCost(size, fsBlockBytes(dir)), gate)
		data, ds := fill(t, s, n, size)
		gate.hold(s.path(ds[0]))
		big, bigD := blobN(n, 8*int(s.blockBytes))
		bigPut := goPut(s, bigD, big)
		if p := gate.nextHeld(t); p != s.path(ds[0]) {
			t.Fatalf("held the removal of %s, want the oldest blob's", p)
		}
		return s, gate, data, ds, bigPut
	}
	check := func(t *testing.T, s *DiskBlobStore, d digest.Digest, data []byte) {
		t.Helper()
		if err := readEquals(s, d, data); err != nil {
			t.Fatalf("the blob stored again while its eviction was pending: %v", err)
		}
		if !fileExists(s.path(d)) {
			t.Fatal("the file of the blob stored again is gone")
		}
	}

	t.Run("removal queued", func(t *testing.T) {
		s, gate, data, ds, bigPut := setup(t)
		// ds[1]'s removal is queued behind ds[0]'s, which is held.
		within(t, "Put of a blob whose removal is queued", func() error {
			return s.Put(context.Background(), ds[1], bytes.NewReader(data[1]))
		})
		if m := missingOf(t, s, ds[1]); len(m) != 0 {
			t.Fatal("the blob stored again is missing")
		}
		gate.open()
		await(t, "the evicting Put", bigPut)
		check(t, s, ds[1], data[1])
		if fileExists(s.path(ds[0])) {
			t.Fatal("the evicted file is still there")
		}
	})

	t.Run("removal in progress", func(t *testing.T) {
		s, gate, data, ds, bigPut := setup(t)
		again := goPut(s, ds[0], data[0])
		pollUntil(t, "the Put of the blob being removed waits for its removal", func() bool {
			if !s.mu.TryLock() { // held while a file is removed: not waiting, then
				return false
			}
			defer s.mu.Unlock()
			return s.unlinkWaits == 1
		})
		if m := missingOf(t, s, ds[0]); len(m) != 1 {
			t.Fatal("a blob whose file is being removed is reported present")
		}
		gate.open()
		await(t, "the Put of the blob being removed", again)
		await(t, "the evicting Put", bigPut)
		check(t, s, ds[0], data[0])
	})
}

// TestDiskStartUpEvictionRemovesFilesInTheBackground: opening a store
// with a bound lower than what it holds evicts at once, says so in the
// log, and returns while the files are still being removed; the evicted
// blobs are missing, the rest readable, and one stored again meanwhile
// survives. Before, 200,000 files were removed before the store returned:
// the port stayed closed for 2m35s, with no log line.
func TestDiskStartUpEvictionRemovesFilesInTheBackground(t *testing.T) {
	const n, size, keep = 1000, 256, 500
	dir := t.TempDir()
	cost := diskCost(size, fsBlockBytes(dir))
	s0 := openGated(t, dir, 0, newUnlinkGate(t))
	data, ds := fill(t, s0, n, size)
	// Ages in the order stored, so that the bound keeps the newest half.
	base := time.Now().Add(-time.Hour)
	for i, d := range ds {
		at := base.Add(time.Duration(i) * time.Second)
		if err := os.Chtimes(s0.path(d), at, at); err != nil {
			t.Fatal(err)
		}
	}
	gate := newUnlinkGate(t)
	for _, d := range ds[:n-keep] {
		gate.hold(s0.path(d))
	}
	var logs testlog.Buffer
	var s *DiskBlobStore
	within(t, "opening the store with a lower bound", func() (err error) {
		s, err = newDiskBlobStore(DiskOptions{Dir: dir, MaxBytes: keep * cost, Logger: slog.New(slog.NewTextHandler(&logs, nil))}, gate.remove)
		return err
	})
	gate.nextHeld(t)
	if want := fmt.Sprintf("blobs=%d bytes=%d", n-keep, (n-keep)*cost); !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "level=INFO") {
		t.Fatalf("the log does not say (at INFO) %q:\n%s", want, logs.String())
	}

	if m := missingOf(t, s, ds...); len(m) != n-keep || m[0] != ds[0] || m[n-keep-1] != ds[n-keep-1] {
		t.Fatalf("%d blobs missing after start-up; want the %d oldest", len(m), n-keep)
	}
	if _, err := s.Get(context.Background(), ds[0], 0); status.Code(err) != codes.NotFound {
		t.Fatalf("Get of a blob evicted at start-up: %v, want NOT_FOUND", err)
	}
	for i := n - keep; i < n; i++ {
		if err := readEquals(s, ds[i], data[i]); err != nil {
			t.Fatalf("blob %d, kept: %v", i, err)
		}
	}
	if !fileExists(s.path(ds[n-keep-1])) {
		t.Fatal("the evicted files are gone already: the test needs their removal pending")
	}
	const again = 250 // its removal is queued
	within(t, "Put of a blob whose removal is queued", func() error {
		return s.Put(context.Background(), ds[again], bytes.NewReader(data[again]))
	})

	gate.open()
	pollUntil(t, "the evicted files are removed", func() bool { return !fileExists(s.path(ds[n-keep-1])) })
	for i := range n - keep {
		if i != again && fileExists(s.path(ds[i])) {
			t.Fatalf("the file of blob %d, evicted at start-up, is still there", i)
		}
	}
	if err := readEquals(s, ds[again], data[again]); err != nil || !fileExists(s.path(ds[again])) {
		t.Fatalf("the blob stored again during start-up's eviction: %v (file there: %v)", err, fileExists(s.path(ds[again])))
	}
}
