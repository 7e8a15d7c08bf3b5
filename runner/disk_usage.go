package runner

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// maxWalkDepth bounds how many directories deep below the input root
// walkTree goes, and so how many descriptors one walk holds open (one a
// level). It is twice the worker's own bounds on input and output depth
// (256 each), so no tree a build can take in or hand back comes near it,
// while an action that nests directories deeper (which needs only
// relative paths: mkdir d; cd d) is killed rather than partly counted: a
// walk that stopped there would hide everything below, and keeping every
// level open would let the action choose how many descriptors the runner
// uses. The alternative, closing ancestors and finding them again by name
// or "..", is open to the action renaming them meanwhile.
const maxWalkDepth = 512

// errTooDeep says a tree goes deeper than maxWalkDepth.
var errTooDeep = fmt.Errorf("directories nested more than %d deep", maxWalkDepth)

// walkBufSize is the getdents buffer of each level of a walk.
const walkBufSize = 8 << 10

// treeCounter sums what a walk has seen. It is used by one walk only.
type treeCounter struct {
	owns func(uid uint32) bool
	u    diskUse
	seen map[uint64]bool // inodes with more than one link
	bufs [][]byte        // getdents buffers, one a level, reused
}

// walkTree returns how many entries (files, directories, links) of the
// tree whose root directory is open as root the owner owns, itself
// included, and the disk blocks its files take, counting a file with
// several links once. It closes root.
//
// Why descriptors, not path names: below a path longer than PATH_MAX
// (4096 bytes; twenty nested 250-byte names) every lstat fails with
// ENAMETOOLONG, and a walk by path name skipped whatever an action hid
// there. walkTree opens each directory relative to its parent
// (openat with O_NOFOLLOW, never following a symlink), stats entries
// relative to it, and reads names from the descriptor, so no path is ever
// built. Directories are counted by a stat of the opened descriptor, so
// what is counted is what is read.
//
// Entries that vanish meanwhile are skipped, as is an entry replaced by
// another of another type between its stat and its open (looked at
// again). Any other error, and a tree deeper than maxWalkDepth, fail the
// walk: the caller cannot know what it missed. Root bypasses permission
// bits, so an action's chmod 000 cannot hide a directory. What a walk
// cannot see is what the action moves, during the walk, from a directory
// not yet read into one already read; the next walk finds it.
func walkTree(root int, owns func(uid uint32) bool) (diskUse, error) {
	c := &treeCounter{owns: owns, seen: map[uint64]bool{}}
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		unix.Close(root)
		return diskUse{}, fmt.Errorf("stat: %w", err)
	}
	c.count(&st)
	err := c.dir(root, 0)
	return c.u, err
}

// dirAllowance is what a directory may take on disk uncounted: the one
// block an ext4 or xfs directory starts with.
const dirAllowance = 4096

// count adds one entry, if the sandbox owns it: every link by number;
// directories by their blocks past dirAllowance, other inodes by blocks
// once. The allowance keeps the input root's own directories, which
// belong to the sandbox too, from using up the quota (a file that
// RLIMIT_FSIZE stopped at the byte quota must stay within it); past it a
// directory counts, since a directory never shrinks: one grown by 300,000
// long names, then emptied, keeps its 111 MB with no entry left, and an
// action made such directories, uncounted, until the disk was full.
func (c *treeCounter) count(st *unix.Stat_t) {
	if !c.owns(st.Uid) {
		return
	}
	c.u.files++
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		c.u.bytes += max(st.Blocks*512-dirAllowance, 0)
		return
	}
	if st.Nlink > 1 {
		if c.seen[st.Ino] {
			return
		}
		c.seen[st.Ino] = true
	}
	c.u.bytes += st.Blocks * 512
}

// dir counts the entries of the directory open as fd, depth levels below
// the root, and below them; it closes fd.
func (c *treeCounter) dir(fd, depth int) error {
	defer unix.Close(fd)
	if len(c.bufs) <= depth {
		c.bufs = append(c.bufs, make([]byte, walkBufSize))
	}
	buf := c.bufs[depth]
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil {
			return fmt.Errorf("read directory: %w", err)
		}
		if n <= 0 {
			return nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names[:0])
		for _, name := range names {
			if err := c.entry(fd, name, depth); err != nil {
				return fmt.Errorf("%s/%w", name, err)
			}
		}
	}
}

// entryRetries bounds how often entry looks again at a name whose type
// changed between its stat and its open.
const entryRetries = 3

// entry counts the entry name of the directory dirfd, and what is below
// it if it is a directory.
func (c *treeCounter) entry(dirfd int, name string, depth int) error {
	for try := 0; ; try++ {
		var st unix.Stat_t
		err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil
		case err != nil:
			return fmt.Errorf("stat: %w", err)
		case st.Mode&unix.S_IFMT != unix.S_IFDIR:
			c.count(&st)
			return nil
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		switch {
		case errors.Is(err, unix.ENOENT):
			return nil
		case (errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)) && try < entryRetries:
			continue // replaced by a file or symlink since the stat
		case err != nil:
			return fmt.Errorf("open: %w", err)
		}
		if err := unix.Fstat(fd, &st); err != nil {
			unix.Close(fd)
			return fmt.Errorf("stat: %w", err)
		}
		c.count(&st)
		if depth+1 >= maxWalkDepth {
			unix.Close(fd)
			return errTooDeep
		}
		return c.dir(fd, depth+1)
	}
}
