package worker

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxPooledDirs bounds a dirPool: a few actions' input roots of
// directories. Each costs an inode and a block of the disk.
const maxPooledDirs = 4096

// dirPool keeps empty directories of finished actions' input roots for
// later ones: the trash moves a directory here instead of removing it
// once it is empty and clean, and an input root's directories are taken
// from here (one rename each) before any is made. A rename allocates and
// frees no inode. On an ext4 without a journal each new inode costs a
// scan past every inode of its block group freed in the last minute or
// so (ext4's recently_deleted), and a Bazel genrule's input root is
// about ten directories: the farm's own share of the scan was about a
// third of its CPU.
//
// A directory comes back only if nothing an action could have done to it
// survives: it is empty, one block long (ext4 never shrinks a directory,
// and a long one stays slow to read), has the extended attributes (ACLs
// included) and inode flags of a directory made new here, and is then
// given back the owner and mode a new one has. What an action can set on
// its own directory from its user namespace (modes, owner within its
// range, user.* attributes, ACLs, inode flags like nodump, an encryption
// or casefold flag on an empty one, access and modification times) either
// is reset or keeps the directory out. Project quota ids cannot be
// changed from a user namespace. The trash recycles only the directories
// of actions whose sandbox has ended (Run came back: the command exited,
// or was killed at its timeout or limit), so no process of theirs is left
// to hold one.
//
// The pool starts empty: what a previous process left is not trusted.
// Safe for concurrent use.
type dirPool struct {
	fd  int        // the pool directory, mode 0700, the worker's alone
	ref inodeState // of a directory made new here
	max int

	mu   sync.Mutex
	free []string
	seq  int
}

// newDirPool makes (or empties) dir and returns a pool there of at most
// max directories; discard removes what a previous process left in it.
func newDirPool(dir string, max int, discard func(string)) (*dirPool, error) {
	discard(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create directory pool: %w", err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open directory pool: %w", err)
	}
	p := &dirPool{fd: fd, max: max}
	if err := p.probe(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("directory pool: %w", err)
	}
	return p, nil
}

// probe reads the state of a new directory, made as the input root's are.
func (p *dirPool) probe() error {
	const name = "probe"
	if err := unix.Mkdirat(p.fd, name, 0o755); err != nil {
		return err
	}
	defer unix.Unlinkat(p.fd, name, unix.AT_REMOVEDIR)
	fd, err := unix.Openat(p.fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := checkEmptyDir(fd); err != nil {
		return err
	}
	ref, err := readInodeState(fd)
	p.ref = ref
	return err
}

// checkEmptyDir fails unless fd is a directory without entries.
func checkEmptyDir(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Nlink != 2 {
		return errors.New("not an empty directory")
	}
	empty, err := isEmptyDir(fd)
	if err != nil || !empty {
		return errors.Join(errors.New("not an empty directory"), err)
	}
	return nil
}

// isEmptyDir reports whether the directory fd has no entries, reading it
// from its start (its link count says only that it has no subdirectory).
func isEmptyDir(fd int) (bool, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return false, err
	}
	buf := make([]byte, 512)
	for {
		n, err := unix.Getdents(fd, buf)
		if err != nil || n == 0 {
			return err == nil, err
		}
		if _, count, _ := unix.ParseDirent(buf[:n], 1, nil); count > 0 {
			return false, nil
		}
	}
}

// clean reports whether the directory fd is as new (dirPool's rules),
// but for owner and mode, which it gives back.
func (p *dirPool) clean(fd int) bool {
	// One stat for both checks: a directory with no subdirectory
	// (checkEmptyDir's, read from the state), then no entry at all.
	s, err := readInodeState(fd)
	if err != nil || !s.dir || s.nlink != 2 || s.size > p.ref.size || !s.sameAttrs(p.ref) {
		return false
	}
	if empty, err := isEmptyDir(fd); err != nil || !empty {
		return false
	}
	if s.uid != p.ref.uid || s.gid != p.ref.gid {
		if unix.Fchown(fd, int(p.ref.uid), int(p.ref.gid)) != nil {
			return false
		}
	}
	if s.mode != p.ref.mode && unix.Fchmod(fd, p.ref.mode) != nil {
		return false
	}
	return touchNow(fd) == nil
}

// touchNow sets the access and modification times of the open inode fd
// to now: an action can set them to anything on what it owns, 128 bits a
// file to pass to whoever gets the inode next, or a date that keeps a
// blob the most recently used. It is futimens(3): utimensat on the
// descriptor itself, without a path (x/sys's Futimes goes through
// /proc/self/fd, a lookup in procfs per call).
func touchNow(fd int) error {
	now := [2]unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&now[0])), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// wants reports whether the pool has room.
func (p *dirPool) wants() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free) < p.max
}

// keep moves the empty directory name of parentFd, open as fd, into the
// pool if there is room and it is clean, and reports whether it did.
func (p *dirPool) keep(parentFd int, name string, fd int) bool {
	p.mu.Lock()
	full := len(p.free) >= p.max
	p.seq++
	own := strconv.Itoa(p.seq)
	p.mu.Unlock()
	if full || !p.clean(fd) {
		return false
	}
	if unix.Renameat2(parentFd, name, p.fd, own, unix.RENAME_NOREPLACE) != nil {
		return false
	}
	p.mu.Lock()
	p.free = append(p.free, own)
	p.mu.Unlock()
	return true
}

// mkdirat makes directory name in parentFd as unix.Mkdirat(parentFd,
// name, 0o755) would, from the pool if it has one: it fails with EEXIST
// if the name is taken, whatever takes it.
func (p *dirPool) mkdirat(parentFd int, name string) error {
	if p == nil {
		return unix.Mkdirat(parentFd, name, 0o755)
	}
	p.mu.Lock()
	if len(p.free) == 0 {
		p.mu.Unlock()
		return unix.Mkdirat(parentFd, name, 0o755)
	}
	own := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	p.mu.Unlock()
	err := unix.Renameat2(p.fd, own, parentFd, name, unix.RENAME_NOREPLACE)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, unix.EEXIST):
		p.mu.Lock()
		p.free = append(p.free, own)
		p.mu.Unlock()
		return err
	}
	// The pooled one is gone (removed by hand?), or it cannot move there
	// (the parent is gone, or on another filesystem): make one, and keep
	// the pooled one if that fails too.
	if err := unix.Mkdirat(parentFd, name, 0o755); err != nil {
		p.mu.Lock()
		p.free = append(p.free, own)
		p.mu.Unlock()
		return err
	}
	return nil
}

// mkdir is mkdirat for a path.
func (p *dirPool) mkdir(path string) error {
	if err := p.mkdirat(unix.AT_FDCWD, path); err != nil {
		return &os.PathError{Op: "mkdir", Path: path, Err: err}
	}
	return nil
}

// size returns how many directories the pool holds.
func (p *dirPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.free)
}
