package worker

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"sync"
)

// streamFiles hands out the files that actions' stdout and stderr are
// captured in (Options.StreamDir): a pair per action running at once,
// reused from one action to the next. Creating and removing two files per
// action is most of the filesystem work of a trivial action on some
// filesystems (ext4 without a journal searches past every recently removed
// inode for each new one); truncating a file is not.
//
// The runner truncates a pair when its sandbox opens it, and the worker
// empties it when the action ends, so nothing of an action's output stays
// behind. A pair whose Run call did not come back (cancelled, or the runner
// failed, so a sandbox may still be writing to it) is removed instead:
// the next action at those paths gets new files, and a late write goes to
// the unlinked ones. The directory is the worker's alone (mode 0700): the
// sandbox's spawner opens the files as root, and a sandbox never sees
// them. Safe for concurrent use.
type streamFiles struct {
	dir  string
	mu   sync.Mutex
	free []int // pair numbers not in use
	next int   // pairs made so far
}

// streamPair is one pair of capture files.
type streamPair struct {
	n              int
	stdout, stderr string
}

// newStreamFiles empties dir (pairs of a previous worker) and returns its
// pairs' handler.
func newStreamFiles(dir string) (*streamFiles, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	return &streamFiles{dir: dir}, nil
}

// take returns a pair no other action is using.
func (s *streamFiles) take() streamPair {
	s.mu.Lock()
	n := s.next
	if len(s.free) > 0 {
		n = s.free[len(s.free)-1]
		s.free = s.free[:len(s.free)-1]
	} else {
		s.next++
	}
	s.mu.Unlock()
	base := filepath.Join(s.dir, strconv.Itoa(n))
	return streamPair{n: n, stdout: base + ".stdout", stderr: base + ".stderr"}
}

// give returns p for reuse: emptied if its Run ended (ran is true),
// removed if a sandbox may still be writing to it.
func (s *streamFiles) give(p streamPair, ran bool) {
	for _, f := range []string{p.stdout, p.stderr} {
		var err error
		if ran {
			err = os.Truncate(f, 0)
		} else {
			err = os.Remove(f)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// Neither emptied nor removed: never hand this path out again.
			return
		}
	}
	s.mu.Lock()
	s.free = append(s.free, p.n)
	s.mu.Unlock()
}
