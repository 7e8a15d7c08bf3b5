package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// removeGate is an Options.removeTree that deletes nothing until open is
// closed, and gives up (as removeTree does) once the remover stops.
type removeGate struct {
	open    chan struct{}
	started chan string // each path it is asked to delete, if there is room
	removed atomic.Int64
}

func newRemoveGate() *removeGate {
	return &removeGate{open: make(chan struct{}), started: make(chan string, 16)}
}

func (g *removeGate) remove(path string, stop <-chan struct{}) error {
	select {
	case g.started <- path:
	default:
	}
	select {
	case <-g.open:
	case <-stop:
		return errStopped
	}
	if err := removeTree(path, stop); err != nil {
		return err
	}
	g.removed.Add(1)
	return nil
}

// trashDirs lists the trees in the cache's tmp/ waiting for deletion.
func trashDirs(c *Cache) []string {
	m, _ := filepath.Glob(filepath.Join(c.store.tmp(), trashPrefix+"*"))
	return m
}

// makeTree makes n empty directories below dir, in rows of 100.
func makeTree(t *testing.T, dir string, n int) {
	t.Helper()
	for i := range n {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprint(i/100), fmt.Sprint(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestOpenDoesNotWaitForOldTrash: what a previous run left in tmp/ is
// deleted after the cache is open, not before: deleting ~175,000 entries
// first kept a runner from being ready within 30 s, three times.
func TestOpenDoesNotWaitForOldTrash(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "tmp", "trash-1000-abc", "x")
	makeTree(t, old, 2000)
	gate := newRemoveGate()
	opened := make(chan error, 1)
	var c *Cache
	go func() {
		var err error
		c, err = New(Options{Dir: dir, Logger: testLogger(t), removeTree: gate.remove})
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() }) // teardown: nothing uses the cache after it
	case <-time.After(30 * time.Second):
		t.Fatal("New waited for the old trash to be deleted")
	}
	if n := countEntries(t, filepath.Join(dir, "tmp")); n < 2000 {
		t.Fatalf("%d entries left under tmp/ once open, want the old trash (2000+) still there: deleted before serving", n)
	}
	// The old trash counts toward the bound while it waits, as its name says.
	if pending, _ := c.trash.pendingBytes(); pending != 1000 {
		t.Errorf("pending trash = %d bytes, want the 1000 its name records", pending)
	}
	close(gate.open)
	waitUntil(t, "the old trash is deleted", func() bool { return countEntries(t, filepath.Join(dir, "tmp")) == 0 })
	if pending, _ := c.trash.pendingBytes(); pending != 0 {
		t.Errorf("pending trash = %d bytes once deleted, want 0", pending)
	}
}

// countEntries counts what is below dir (0 if it does not exist).
func countEntries(t *testing.T, dir string) int {
	n := 0
	// The callback returns no error, and nor does the walk: entries may
	// vanish while the trash is deleted, and a missing dir counts 0.
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && p != dir {
			n++
		}
		return nil
	})
	return n
}

// TestCloseLeavesTheQueue: Close does not delete what is queued (a
// runner's graceful stop deleting 200,000 directories was killed by its
// supervisor after 10 s); it stops between two entries, and the next
// start deletes the rest.
func TestCloseLeavesTheQueue(t *testing.T) {
	dir := t.TempDir()
	c := newTestCache(t, dir, nil, nil)
	trees := make([]trashTree, 3)
	for i := range trees {
		src := filepath.Join(dir, fmt.Sprint("evicted", i))
		makeTree(t, src, 1000)
		tr, err := c.store.discard(src, 100)
		if err != nil {
			t.Fatal(err)
		}
		trees[i] = tr
	}
	c.trash.add(trees)
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for the queued trees to be deleted")
	}
	if n := countEntries(t, filepath.Join(dir, "tmp")); n == 0 {
		t.Fatal("Close deleted the queued trees")
	}
	c2 := newTestCache(t, dir, nil, nil)
	// The remover counts a tree as gone just after it has deleted it: wait
	// for both (a pending count that never comes back to 0 fails here).
	waitUntil(t, "the next start deletes what was left, and counts it deleted", func() bool {
		pending, _ := c2.trash.pendingBytes()
		return countEntries(t, filepath.Join(dir, "tmp")) == 0 && pending == 0
	})
}

// TestTrashCountsTowardTheBound: evicted trees take disk space until they
// are deleted, so a pull waits for them rather than filling the disk past
// the bound beside them (971 MB of trash stayed beside a full 1 GiB cache).
func TestTrashCountsTowardTheBound(t *testing.T) {
	r := newTestRegistry(t)
	imgs := map[string]v1.Image{}
	for _, tag := range []string{"aaaa", "bbbb", "cccc"} {
		imgs[tag] = imageOf(t, "linux/amd64", v1.Config{},
			layerOf(t, compression.GZip, file("data", strings.Repeat(tag, 1<<20/len(tag)), 0o644)))
		r.push(t, "e:"+tag, imgs[tag])
	}
	gate := newRemoveGate()
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.MaxBytes = 1<<20 + 64<<10; o.removeTree = gate.remove })
	r.rootfs(t, c, "e:aaaa").Release()
	rb := r.rootfs(t, c, "e:bbbb") // evicts a, whose deletion waits
	defer rb.Release()
	<-gate.started
	if pending, _ := c.trash.pendingBytes(); pending < 1<<20 {
		t.Fatalf("pending trash = %d bytes, want a's 1 MiB counted", pending)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if rf, err := c.Rootfs(ctx, r.ref(t, "e:cccc")); err == nil {
		rf.Release()
		t.Fatal("c pulled beside a's undeleted tree, past the bound")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pull of c: %v, want it to wait for the deletion until its deadline", err)
	}
	blobs, _ := r.counts()
	if n := blobs[layerBlobPath(t, imgs["cccc"])]; n != 0 {
		t.Fatalf("c's layer was downloaded %d times while a's tree waited for deletion", n)
	}

	close(gate.open)
	rc := r.rootfs(t, c, "e:cccc")
	rc.Release()
}

// layerBlobPath is the registry path of img's only layer.
func layerBlobPath(t *testing.T, img v1.Image) string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := ls[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return "/v2/e/blobs/" + d.String()
}
