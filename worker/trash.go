package worker

import (
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
)

// trash removes directory trees in the background, so that no action's
// slot, and no start-up, waits for a removal: a tree is renamed into the
// trash directory (same filesystem, so that is one rename) and removed
// there by one goroutine with removeTree, which works for any depth and
// width with a bounded number of open descriptors. A tree it cannot
// remove is logged and left in the trash, where the next start-up tries
// again; it never blocks the farm.
type trash struct {
	dir  string
	log  *slog.Logger
	seq  atomic.Int64
	wake chan struct{}
	stop chan struct{}
	once sync.Once
}

// newTrash opens the trash directory dir (creating it) and starts its
// remover, which first empties what a previous run left there.
func newTrash(dir string, log *slog.Logger) (*trash, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create trash directory: %w", err)
	}
	t := &trash{dir: dir, log: log, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	t.seq.Store(time.Now().UnixNano())
	go t.run()
	t.kick()
	return t, nil
}

// discard moves p (a file or directory tree) into the trash and returns at
// once; if p cannot be moved, it is removed here.
func (t *trash) discard(p string) {
	dst := filepath.Join(t.dir, strconv.FormatInt(t.seq.Add(1), 36))
	if err := os.Rename(p, dst); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return
		}
		if err := removeTree(p); err != nil {
			t.log.Warn("cannot remove a build directory", "error", err)
		}
		return
	}
	t.kick()
}

func (t *trash) kick() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

// close stops the remover at its next entry; it does not wait for the
// removal in progress (a deep tree can take a while), which is safe: what
// is left is removed at the next start.
func (t *trash) close() {
	t.once.Do(func() { close(t.stop) })
}

func (t *trash) run() {
	for {
		select {
		case <-t.stop:
			return
		case <-t.wake:
		}
		if err := t.empty(); err != nil {
			t.log.Warn("cannot empty the trash; the next start-up tries again", "dir", t.dir, "error", err)
		}
	}
}

// empty removes everything in the trash directory.
func (t *trash) empty() error {
	d, err := os.Open(t.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		names, err := d.Readdirnames(256)
		for _, n := range names {
			select {
			case <-t.stop:
				return nil
			default:
			}
			if err := removeTree(filepath.Join(t.dir, n)); err != nil {
				return err
			}
		}
		if err == io.EOF || len(names) == 0 {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// maxRemoveDepth bounds how many directories removeTree holds open: below
// it, a subdirectory is moved up to the top of the tree being removed and
// removed from there later.
const maxRemoveDepth = 32

// deepSeq names the subtrees removeTree moves up: unique in this process,
// where a clock reading could repeat (with the pid, across processes).
var deepSeq atomic.Int64

// removeTree removes p and everything below it, without recursion on the
// stack and with at most maxRemoveDepth+1 descriptors open, however deep
// or wide the tree (os.RemoveAll holds a descriptor per level: a
// 100,000-deep tree exhausts them). Nothing is followed: entries are
// unlinked by name relative to their directory's descriptor, and a
// directory is opened with O_NOFOLLOW.
func removeTree(p string) error {
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
				if err := removeBelow(int(top.Fd()), n); err != nil {
					return err
				}
				removed = true
			}
			if len(names) == 0 || err != nil {
				break
			}
		}
		if !removed {
			return unix.Rmdir(p)
		}
	}
}

// removeBelow removes entry name of the directory topFd, iteratively: a
// stack of open directories, never deeper than maxRemoveDepth.
func removeBelow(topFd int, name string) error {
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
		if unix.Unlinkat(dirFd, n, unix.AT_REMOVEDIR) == nil {
			return nil
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
