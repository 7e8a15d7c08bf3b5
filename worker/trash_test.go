package worker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/storage"
)

// makeDeepTree makes a chain of depth directories under dir/name, with a
// file at the bottom and a few files on the way, by descriptor (the path
// would be far longer than PATH_MAX).
func makeDeepTree(t *testing.T, dir string, depth int) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range depth {
		if i%1000 == 0 {
			f, err := unix.Openat(fd, "f"+strconv.Itoa(i), unix.O_CREAT|unix.O_WRONLY, 0o644)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(f)
		}
		if err := unix.Mkdirat(fd, "d", 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(fd, "d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	unix.Close(fd)
}

// withFDLimit runs f with the soft limit on open descriptors lowered to n.
func withFDLimit(t *testing.T, n uint64, f func()) {
	var old unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	lim := old
	lim.Cur = n
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &old); err != nil {
			t.Errorf("restoring the descriptor limit: %v", err)
		}
	}()
	f()
}

// TestRemoveTreeAnyDepthBoundedFDs: a 20,000-deep tree and a wide
// directory are removed with the descriptor limit at 256 (os.RemoveAll
// holds one per level).
func TestRemoveTreeAnyDepthBoundedFDs(t *testing.T) {
	dir := t.TempDir()
	deep := filepath.Join(dir, "deep")
	if err := os.Mkdir(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	makeDeepTree(t, deep, 20_000)
	wide := filepath.Join(dir, "wide")
	if err := os.Mkdir(wide, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if err := os.WriteFile(filepath.Join(wide, strconv.Itoa(i)), nil, 0o000); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(wide, 0o000); err != nil { // unreadable to others; the worker is root
		t.Fatal(err)
	}
	withFDLimit(t, 256, func() {
		for _, p := range []string{deep, wide} {
			if err := removeTree(p); err != nil {
				t.Fatalf("removeTree(%s): %v", filepath.Base(p), err)
			}
		}
	})
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("left behind: %v", entries)
	}
}

// TestStartupDiscardsDeepBuildDir: a build directory left by a crash with
// a tree os.RemoveAll cannot remove does not stop New; it goes to the
// trash and is removed in the background.
func TestStartupDiscardsDeepBuildDir(t *testing.T) {
	dir := t.TempDir()
	builds := filepath.Join(dir, "builds")
	stale := filepath.Join(builds, "op-1", "root")
	if err := os.MkdirAll(stale, 0o755); err != nil {
		t.Fatal(err)
	}
	makeDeepTree(t, stale, 30_000)
	withFDLimit(t, 256, func() {
		if err := os.RemoveAll(builds); err == nil {
			t.Skip("os.RemoveAll managed the deep tree under a 256-descriptor limit; nothing to show")
		}
	})
	cas := storage.NewMemoryBlobStore()
	files, err := NewFileCache(FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas})
	if err != nil {
		t.Fatal(err)
	}
	var w *Worker
	withFDLimit(t, 256, func() {
		w, err = New(Options{ID: "w", CAS: cas, AC: storage.NewMemoryActionCache(), Files: files,
			Runner: noRunner{}, BuildDir: builds, TrashDir: filepath.Join(dir, "trash")})
	})
	if err != nil {
		t.Fatalf("New with a stale 30,000-deep build directory: %v", err)
	}
	defer w.Close()
	if entries, err := os.ReadDir(builds); err != nil || len(entries) != 0 {
		t.Fatalf("the new build directory holds %v (%v), want it empty", entries, err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		entries, _ := os.ReadDir(filepath.Join(dir, "trash"))
		if len(entries) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the trash still holds %d entries after 2 minutes", len(entries))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noRunner is a Runner for workers that run nothing.
type noRunner struct{}

func (noRunner) Run(context.Context, *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	return nil, errors.New("no runner")
}

// TestTrashBacklogWait: past maxBacklog trees waiting for removal, wait
// blocks (a new action's input root is not made) until a removal brings
// the backlog back to the bound, or the action's context ends; and a tree
// that cannot be removed leaves the backlog rather than hold it forever.
func TestTrashBacklogWait(t *testing.T) {
	dir := t.TempDir()
	tr, err := newTrash(filepath.Join(dir, "trash"), 1, 2, testlog.Logger(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	// The remover takes one tree at a time, and removes it (or fails)
	// only when the test says so.
	release := make(chan error)
	taken := make(chan string)
	tr.mu.Lock()
	tr.remove = func(p string, keep keeper) error {
		taken <- filepath.Base(p)
		if err := <-release; err != nil {
			return err
		}
		return removeTreeKeeping(p, keep)
	}
	tr.mu.Unlock()
	discard := func(name string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Join(p, "d"), 0o755); err != nil {
			t.Fatal(err)
		}
		tr.discard(p)
	}
	waitReturns := func() <-chan error {
		done := make(chan error, 1)
		go func() { done <- tr.wait(context.Background()) }()
		return done
	}

	discard("a") // being removed
	<-taken
	discard("b")
	if err := tr.wait(context.Background()); err != nil {
		t.Fatalf("wait at the bound: %v", err)
	}
	discard("c") // three trees: past the bound of two
	done := waitReturns()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tr.wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("wait past the bound with its context ended = %v, want %v", err, context.Canceled)
	}
	select {
	case err := <-done:
		t.Fatalf("wait returned %v with three trees in the trash, want it blocked", err)
	default:
	}
	release <- errors.New("cannot") // a fails: it is left, and leaves the backlog
	if err := <-done; err != nil {
		t.Fatalf("wait after a removal: %v", err)
	}
	<-taken
	release <- nil
	<-taken
	release <- nil
	if err := tr.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
}
