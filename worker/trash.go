package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/dirnames"
)

// trash removes directory trees in the background, so that no action's
// slot, and no start-up, waits for a removal: a tree is renamed into the
// trash directory (same filesystem, so that is one rename) and removed
// there by a few goroutines with removeTree, which works for any depth and
// width with a bounded number of open descriptors. A tree it cannot
// remove is logged and left in the trash, where the next start-up tries
// again; it never blocks the farm.
//
// Removal is slower than making: an action made 100,000 directories in
// 14 s that took one remover 97 s to remove, and actions making
// directories in two slots without pause grew the disk past any
// per-action quota (four actions of 150,000 directories left 4.1 GB and
// 900,000 inodes, 550 s to drain). So the trash pushes back: wait, which
// the worker calls before it makes an action's build directory, blocks
// while more trees wait for removal than maxBacklog, and what the trash
// holds is bounded by maxBacklog trees, each bounded by the runner's
// per-action disk quotas.
type trash struct {
	dir        string
	log        *slog.Logger
	seq        atomic.Int64
	maxBacklog int
	remove     func(p string, keep keeper) error // removeTreeKeeping; a test's may block (set under mu)
	pool       *dirPool                          // where recycled trees' directories go; nil: none

	mu     sync.Mutex
	queue  []trashItem   // entries of dir not yet being removed, oldest first
	busy   int           // names being removed
	ready  *sync.Cond    // on mu: the queue grew, or the trash closed
	shrunk chan struct{} // closed, and replaced, when the backlog shrinks or the trash closes
	closed bool
}

// trashItem is a tree in the trash: its name there, and whether its
// directories may go to the pool (recycle).
type trashItem struct {
	name    string
	recycle bool
}

// trashOptions size a trash's removal: for a worker of n slots, one
// remover a slot up to maxRemovers, and a backlog of two trees a slot
// (every slot's last two input roots) before new actions wait. Honest
// input roots are hard links of the inputs and their directories, which
// the removers take in well under an action's time, so only a remover
// outpaced for many actions running, the sign of actions filling the
// disk, makes a new action wait.
func trashOptions(slots int) (removers, maxBacklog int) {
	slots = max(slots, 1)
	return min(slots, maxRemovers), 2 * slots
}

// maxRemovers bounds a trash's removers: removal is mostly the
// filesystem's journal, which more goroutines do not speed up much, and
// each takes a share of the disk from the running actions.
const maxRemovers = 4

// newTrash opens the trash directory dir (creating it) and starts
// removers goroutines, which first remove what a previous run left there;
// wait blocks past maxBacklog trees.
func newTrash(dir string, removers, maxBacklog int, log *slog.Logger) (*trash, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create trash directory: %w", err)
	}
	left, err := dirnames.Read(dir)
	if err != nil {
		return nil, fmt.Errorf("read trash directory: %w", err)
	}
	t := &trash{dir: dir, log: log, maxBacklog: maxBacklog, remove: removeTreeKeeping, shrunk: make(chan struct{})}
	for _, name := range left {
		t.queue = append(t.queue, trashItem{name: name}) // a previous process's: not trusted
	}
	t.ready = sync.NewCond(&t.mu)
	t.seq.Store(time.Now().UnixNano())
	for range max(removers, 1) {
		go t.run()
	}
	return t, nil
}

// discard moves p (a file or directory tree) into the trash and returns at
// once; if p cannot be moved, it is removed here.
func (t *trash) discard(p string) { t.add(p, false) }

// recycle is discard for the input root of an action whose sandbox has
// ended: its empty directories may go to the pool (dirPool's rules)
// instead of being removed.
func (t *trash) recycle(p string) { t.add(p, t.pool != nil) }

func (t *trash) add(p string, recycle bool) {
	name := strconv.FormatInt(t.seq.Add(1), 36)
	if err := os.Rename(p, filepath.Join(t.dir, name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err := removeTree(p); err != nil {
			t.log.Warn("cannot remove a build directory", "error", err)
		}
		return
	}
	t.mu.Lock()
	t.queue = append(t.queue, trashItem{name, recycle})
	t.mu.Unlock()
	t.ready.Signal()
}

// wait returns once the trees waiting for removal (queued or being
// removed) are at most maxBacklog, or the trash is closed, or with
// ctx's error when ctx ends first.
func (t *trash) wait(ctx context.Context) error {
	for {
		t.mu.Lock()
		if t.closed || len(t.queue)+t.busy <= t.maxBacklog {
			t.mu.Unlock()
			return nil
		}
		shrunk := t.shrunk
		t.mu.Unlock()
		select {
		case <-shrunk:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// close stops the removers at their next tree and releases the waiters;
// it does not wait for the removals in progress (a deep tree can take a
// while), which is safe: what is left is removed at the next start.
func (t *trash) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	t.closed = true
	close(t.shrunk)
	t.ready.Broadcast()
}

// run removes the queued trees, one at a time, until the trash closes.
func (t *trash) run() {
	for {
		t.mu.Lock()
		for len(t.queue) == 0 && !t.closed {
			t.ready.Wait()
		}
		if t.closed {
			t.mu.Unlock()
			return
		}
		it, remove := t.queue[0], t.remove
		t.queue = t.queue[1:]
		t.busy++
		t.mu.Unlock()
		var keep keeper
		if it.recycle {
			keep = t.pool
		}
		if err := remove(filepath.Join(t.dir, it.name), keep); err != nil {
			t.log.Warn("cannot remove a tree from the trash; the next start-up tries again", "dir", t.dir, "name", it.name, "error", err)
		}
		t.mu.Lock()
		t.busy--
		if !t.closed {
			close(t.shrunk)
			t.shrunk = make(chan struct{})
		}
		t.mu.Unlock()
	}
}

// maxRemoveDepth bounds how many directories removeTree holds open: below
// it, a subdirectory is moved up to the top of the tree being removed and
// removed from there later.
const maxRemoveDepth = 32

// deepSeq names the subtrees removeTree moves up: unique in this process,
// where a clock reading could repeat (with the pid, across processes).
var deepSeq atomic.Int64

// keeper takes the directories a tree's removal has emptied (dirPool).
type keeper interface {
	// wants reports whether it would take one now: when it would not,
	// an empty directory is removed without being opened.
	wants() bool
	// keep takes the empty directory name of parentFd, open as fd, and
	// reports whether it did; a directory it does not take is removed.
	keep(parentFd int, name string, fd int) bool
}

// removeTree removes p and everything below it, without recursion on the
// stack and with at most maxRemoveDepth+1 descriptors open, however deep
// or wide the tree (os.RemoveAll holds a descriptor per level: a
// 100,000-deep tree exhausts them). Nothing is followed: entries are
// unlinked by name relative to their directory's descriptor, and a
// directory is opened with O_NOFOLLOW.
func removeTree(p string) error { return removeTreeKeeping(p, nil) }

// removeTreeKeeping is removeTree, but each directory, once emptied, is
// first offered to keep (if not nil).
func removeTreeKeeping(p string, keep keeper) error {
	err := unix.Unlinkat(unix.AT_FDCWD, p, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return fmt.Errorf("remove %s: %w", filepath.Base(p), err)
	}
	top, err := os.Open(p)
	if err != nil {
		return err
	}
	defer top.Close()
	// Empty top. Subtrees deeper than the bound are moved into top as
	// entries of their own, so read it again until a pass removes nothing.
	for {
		if _, err := top.Seek(0, io.SeekStart); err != nil {
			return err
		}
		removed := false
		for {
			names, err := top.Readdirnames(256)
			for _, n := range names {
				if err := removeBelow(int(top.Fd()), n, keep); err != nil {
					return err
				}
				removed = true
			}
			if len(names) == 0 || err != nil {
				break
			}
		}
		if !removed {
			if keep != nil && keep.keep(unix.AT_FDCWD, p, int(top.Fd())) {
				return nil
			}
			return unix.Rmdir(p)
		}
	}
}

// removeBelow removes entry name of the directory topFd, iteratively: a
// stack of open directories, never deeper than maxRemoveDepth. Each
// directory emptied is offered to keep first, if not nil.
func removeBelow(topFd int, name string, keep keeper) error {
	type frame struct {
		dir     *os.File
		name    string   // this directory's name in its parent
		pending []string // names read and not yet removed
	}
	var stack []*frame
	closeAll := func() {
		for _, f := range stack {
			f.dir.Close()
		}
	}
	// enter removes n from dirFd if it is not a directory or is empty;
	// otherwise it opens it and pushes it, or, too deep, moves it to top.
	enter := func(dirFd int, n string) error {
		err := unix.Unlinkat(dirFd, n, 0)
		if err == nil || errors.Is(err, unix.ENOENT) {
			return nil
		}
		if !errors.Is(err, unix.EISDIR) {
			return err
		}
		if (keep == nil || !keep.wants()) && unix.Unlinkat(dirFd, n, unix.AT_REMOVEDIR) == nil {
			return nil // empty: nothing to open
		}
		if len(stack) >= maxRemoveDepth {
			return unix.Renameat(dirFd, n, topFd, fmt.Sprintf(".deep-%d-%d", os.Getpid(), deepSeq.Add(1)))
		}
		fd, err := unix.Openat(dirFd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		stack = append(stack, &frame{dir: os.NewFile(uintptr(fd), n), name: n})
		return nil
	}
	if err := enter(topFd, name); err != nil {
		return err
	}
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		if len(f.pending) == 0 {
			f.pending, _ = f.dir.Readdirnames(256)
		}
		if len(f.pending) > 0 {
			n := f.pending[0]
			f.pending = f.pending[1:]
			if err := enter(int(f.dir.Fd()), n); err != nil {
				closeAll()
				return err
			}
			continue
		}
		// Read to the end: remove the directory from its parent.
		parentFd := topFd
		if len(stack) > 1 {
			parentFd = int(stack[len(stack)-2].dir.Fd())
		}
		if keep != nil && keep.keep(parentFd, f.name, int(f.dir.Fd())) {
			f.dir.Close()
			stack = stack[:len(stack)-1]
			continue
		}
		err := unix.Unlinkat(parentFd, f.name, unix.AT_REMOVEDIR)
		if errors.Is(err, unix.ENOTEMPTY) {
			// Entries the reading missed: read it again from the start.
			if _, err := f.dir.Seek(0, io.SeekStart); err != nil {
				closeAll()
				return err
			}
			continue
		}
		f.dir.Close()
		stack = stack[:len(stack)-1]
		if err != nil && !errors.Is(err, unix.ENOENT) {
			closeAll()
			return err
		}
	}
	return nil
}
