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
	// given is what each directory the worker handed over took then.
	given givenDirs
	u     diskUse
	seen  map[uint64]bool // inodes with more than one link
	bufs  [][]byte        // getdents buffers, one a level, reused
}

// givenDirs is what each directory of an input root took on disk
// (dirBytes), by inode, when the worker handed it over: the runner
// records it as it makes the directories the sandbox's
// (chownDirectories), before the sandbox starts, so everything in it the
// worker made.
type givenDirs map[uint64]int64

// walkTree returns how many entries (files, directories, links) of the
// tree whose root directory is open as root the owner owns, itself
// included, and the disk blocks its files and directories take, counting
// a file with several links once and a directory past what it took when
// it was given (givenDirs; nil: nothing was). It closes root.
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
func walkTree(root int, owns func(uid uint32) bool, given givenDirs) (diskUse, error) {
	c := &treeCounter{owns: owns, given: given, seen: map[uint64]bool{}}
	err := c.walk(root)
	return c.u, err
}

// walk counts root, open, and everything below it; it closes root.
func (c *treeCounter) walk(root int) error {
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		unix.Close(root)
		return fmt.Errorf("stat: %w", err)
	}
	c.count(&st)
	return c.dir(root, 0)
}

// minDirBytes is the least a directory counts for: the one block an ext4
// or xfs directory starts with. A filesystem that reports fewer blocks
// for a directory (tmpfs, btrfs: none) still spends an inode and metadata
// on it, and an action must not get directories for free anywhere.
const minDirBytes = 4096

// dirBytes is what the directory st counts for: its blocks, at least
// minDirBytes.
func dirBytes(st *unix.Stat_t) int64 { return max(st.Blocks*512, minDirBytes) }

// count adds one entry, if the sandbox owns it: every link by number;
// other inodes by blocks once; directories by dirBytes, less what the
// directory already took when the worker handed the input root over
// (given). The input root's own directories belong to the sandbox too
// (the runner chowns them so the action can write its outputs there),
// but the worker made them: they must not use up the quota (an input
// root of 20,000 directories would take 80 MB of it, and a file that
// RLIMIT_FSIZE stopped at the byte quota must stay within it). Every
// directory the action makes counts in full: when each was allowed its
// first 4 KiB, 100,000 empty directories took 393 MB under a 64 MiB
// quota, and the action exited 0. Growth counts for every directory,
// given or not, since a directory never shrinks: one grown by 300,000
// long names, then emptied, keeps its 111 MB with no entry left.
//
// given is keyed by inode number: a directory the action removes may
// have its number reused by one it makes, which then counts only past
// the removed one's bytes; that credit is bounded by what the worker
// made.
func (c *treeCounter) count(st *unix.Stat_t) {
	if !c.owns(st.Uid) {
		return
	}
	c.u.files++
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		c.u.bytes += max(dirBytes(st)-c.given[st.Ino], 0)
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
