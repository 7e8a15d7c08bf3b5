package images

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"

	"sync"

	"golang.org/x/sys/unix"
)

// trashTree is a tree moved into the store's tmp directory to be deleted
// (store.discard), with what it counted toward the cache's bound.
type trashTree struct {
	path  string
	bytes int64
}

// remover deletes evicted trees in the background. Eviction happens in
// whichever call goes over the bound, often an unrelated action's setup,
// and deleting a tree of many thousands of entries there took an action
// that ran for 13 ms 52 to 161 s. The trees are already moved aside
// (store.discard) when they are queued here, so nothing sees them.
//
// Queued trees still take disk space, so their bytes stay pending until
// each is gone: the cache counts them toward its bound (Cache.waitForTrash)
// rather than pulling more while they wait (971 MB of trash stayed 18
// minutes beside a full 1 GiB cache).
//
// Closing does not delete the queue: it stops between two entries and
// leaves the rest in tmp/, which the next start moves aside and queues
// again (openStore). Deleting it there kept a runner's graceful stop past
// its supervisor's 10 s, for a tree of 200,000 directories.
type remover struct {
	remove func(path string, stop <-chan struct{}) error // removeTree; tests block it
	log    *slog.Logger

	mu      sync.Mutex
	queue   []trashTree
	pending int64         // bytes of the queued trees and of the one being deleted
	changed chan struct{} // closed, and replaced, when pending drops
	closed  bool
	stop    chan struct{} // closed by close
	wake    chan struct{}
	done    chan struct{}
}

func newRemover(log *slog.Logger, remove func(string, <-chan struct{}) error) *remover {
	if remove == nil {
		remove = removeTree
	}
	r := &remover{remove: remove, log: log, changed: make(chan struct{}),
		stop: make(chan struct{}), wake: make(chan struct{}, 1), done: make(chan struct{})}
	go r.run()
	return r
}

// add queues trees for deletion and returns at once. Once closed, it
// leaves them where they are, for the next start.
func (r *remover) add(trees []trashTree) {
	if len(trees) == 0 {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.queue = append(r.queue, trees...)
	for _, t := range trees {
		r.pending += t.bytes
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// pendingBytes returns what the trees not yet deleted count toward the
// bound, and a channel closed when that drops.
func (r *remover) pendingBytes() (int64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pending, r.changed
}

func (r *remover) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		if len(r.queue) == 0 {
			r.mu.Unlock()
			select {
			case <-r.wake:
				continue
			case <-r.stop:
				return
			}
		}
		t := r.queue[0]
		r.queue = r.queue[1:]
		r.mu.Unlock()
		err := r.remove(t.path, r.stop)
		if errors.Is(err, errStopped) {
			return
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			// Counted as gone all the same: a tree that cannot be deleted
			// must not stop every pull from waiting for it.
			r.log.Error("image cache: remove evicted files", "path", t.path, "err", err)
		}
		r.mu.Lock()
		r.pending -= t.bytes
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
	}
}

// close stops the background deletion, within one entry's deletion, and
// leaves what is queued on disk.
func (r *remover) close() {
	r.mu.Lock()
	if !r.closed {
		r.closed = true
		close(r.stop)
	}
	r.mu.Unlock()
	<-r.done
}

// errStopped is removeTree's error when stop closed before it finished.
var errStopped = errors.New("removal stopped")

// removeTree deletes path and everything below it, as os.RemoveAll does
// (by descriptors, so no path gets too long, and following no symlink),
// but checks stop between two entries and then gives up with errStopped.
func removeTree(path string, stop <-chan struct{}) error {
	dir, base := filepath.Split(filepath.Clean(path))
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dir, Err: err}
	}
	defer unix.Close(fd)
	return removeAt(fd, base, stop)
}
