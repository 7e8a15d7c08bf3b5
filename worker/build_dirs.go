package worker

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// buildDirMode is the build directory's mode: the sandboxes' uids search
// through it to their own action directory, and none may list it.
const buildDirMode = 0o711

// buildDirs makes and disposes of the actions' build directories,
// BuildDir/<action>: each holds the input root ("root") and the files the
// action's stdout and stderr are captured in ("stdout", "stderr", created
// by the runner's sandbox). Nothing else is ever in it, and only the input
// root is shown to the sandbox.
//
// Without a spare directory, each is made for its action and removed when
// the action ends. With one (Options.SpareDir), a directory whose action
// ended is emptied instead (its input root removed, its stdout and stderr
// truncated) and moved there, and the next action's directory is a spare
// one moved back: per action, only the input root is made and removed,
// not also a directory and two files. On some filesystems that is most of
// a trivial action's filesystem work (ext4 without a journal searches past
// every recently removed inode for each new one); a rename and a truncate
// cost little anywhere. The input root's directories are recycled too,
// through a dirPool in SpareDir+".dirs", which takes only those that nothing
// an action did survives in.
//
// A directory whose Run call did not come back (cancelled, or the runner
// failed: a sandbox may still be writing its stdout) is removed, not kept.
// The spare directory is the worker's alone (mode 0700). Safe for
// concurrent use.
type buildDirs struct {
	spare    string // "" = no recycling
	maxSpare int
	trash    *trash   // where removed directories go
	pool     *dirPool // the input roots' directories, with a spare directory

	mu       sync.Mutex
	free     []string // names in spare
	names    int      // names given out so far
	reserved int      // names given out and not yet in free or dropped
}

// newBuildDirs returns the build directories' keeper; with a spare
// directory, it empties it (a previous worker's), keeps at most maxSpare
// directories there and the directory pool in it, which trash recycles
// into.
func newBuildDirs(spare string, maxSpare int, trash *trash) (*buildDirs, error) {
	b := &buildDirs{spare: spare, maxSpare: maxSpare, trash: trash}
	if spare == "" {
		return b, nil
	}
	trash.discard(spare)
	if err := os.MkdirAll(spare, 0o700); err != nil {
		return nil, err
	}
	pool, err := newDirPool(filepath.Clean(spare)+".dirs", maxPooledDirs, trash.discard)
	if err != nil {
		return nil, err
	}
	b.pool, trash.pool = pool, pool
	return b, nil
}

// make creates dir, which must not exist, with an empty directory "root"
// in it, and returns root's path. dir is mode 0700 (a spare one kept its
// mode), and the runner gives it to the sandbox's ids (RunRequest's
// action_dir): the host's other users cannot reach what an action leaves
// in its input root.
func (b *buildDirs) make(dir string) (string, error) {
	root := filepath.Join(dir, "root")
	if name, ok := b.take(); ok {
		if err := os.Rename(filepath.Join(b.spare, name), dir); err == nil {
			return root, b.pool.mkdir(root)
		}
		// Gone (removed by hand?): forget it, make a new one.
	}
	err := os.Mkdir(dir, 0o700)
	if errors.Is(err, fs.ErrNotExist) { // the build directory itself, removed by hand
		if err = os.MkdirAll(filepath.Dir(dir), buildDirMode); err == nil {
			err = os.Mkdir(dir, 0o700)
		}
	}
	if err != nil {
		return root, err
	}
	return root, b.pool.mkdir(root)
}

// done disposes of dir once its action ended. ran says the action's Run
// call came back, so no sandbox writes in dir any more: dir is then
// emptied and kept as a spare, if there is room. Otherwise it is removed.
func (b *buildDirs) done(dir string, ran bool) {
	name, ok := b.reserve()
	if !ok {
		b.trash.discard(dir)
		return
	}
	kept := ran && b.empty(dir) && os.Rename(dir, filepath.Join(b.spare, name)) == nil
	b.mu.Lock()
	b.reserved--
	if kept {
		b.free = append(b.free, name)
	}
	b.mu.Unlock()
	if !kept {
		b.trash.discard(dir)
	}
}

// empty moves dir's input root to the trash, its directories to be
// recycled, and truncates its stream files, and reports whether that
// worked. Only for a directory whose action's Run came back.
func (b *buildDirs) empty(dir string) bool {
	b.trash.recycle(filepath.Join(dir, "root"))
	for _, f := range []string{"stdout", "stderr"} {
		if err := os.Truncate(filepath.Join(dir, f), 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false
		}
	}
	return true
}

func (b *buildDirs) take() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.spare == "" || len(b.free) == 0 {
		return "", false
	}
	name := b.free[len(b.free)-1]
	b.free = b.free[:len(b.free)-1]
	return name, true
}

// reserve returns a new spare name, or false if there is no spare
// directory or it is full; done releases the reservation.
func (b *buildDirs) reserve() (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// Reserved places count: actions ending at once must not together
	// keep more than maxSpare.
	if b.spare == "" || len(b.free)+b.reserved >= b.maxSpare {
		return "", false
	}
	b.reserved++
	b.names++
	return strconv.Itoa(b.names), true
}
