package images

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// tree is a directory that the unpacker and the flattener write into. Every
// name handed to it is resolved beneath the directory with openat2
// RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS, and every final component is created or
// removed with an *at call on the parent's descriptor, so no symlink — whether
// it came from the image or was planted by a racing process — is ever followed
// and nothing outside the directory can be touched.
//
// A tree is used by one goroutine at a time.
type tree struct {
	dir string
	fd  int // O_PATH descriptor of dir
}

func openTree(dir string) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: dir, Err: err}
	}
	return &tree{dir: dir, fd: fd}, nil
}

func (t *tree) Close() error { return unix.Close(t.fd) }

// cleanName turns an archive entry name into a relative path inside the tree.
// A leading "/" or "./" is neutralised (the name is taken relative to the
// root, as every image tool does), but a name that climbs out with ".." is
// refused: no legitimate layer contains one, and silently clamping it would
// hide an attack.
//
// A name longer than the kernel allows (pathMax, or a component past
// nameMax) is refused too, before anything about it is recorded: no
// filesystem could hold it, and the cache would otherwise keep such names
// of skipped entries and whiteouts in memory and in layer.json (a layer of
// a thousand 1 MiB FIFO names, 1.4 MB compressed, made a 2 GB layer.json).
func cleanName(name string) (string, error) {
	n := strings.TrimLeft(name, "/")
	if n == "" {
		return ".", nil
	}
	if len(n) > pathMax {
		return "", fmt.Errorf("%s: name of %d bytes is longer than PATH_MAX (%d)", QuoteShort(name), len(n), pathMax)
	}
	for _, c := range strings.Split(n, "/") {
		if c == ".." {
			return "", fmt.Errorf("%s climbs out of the layer root with \"..\"", QuoteShort(name))
		}
		if len(c) > nameMax {
			return "", fmt.Errorf("%s: a component of %d bytes is longer than NAME_MAX (%d)", QuoteShort(name), len(c), nameMax)
		}
	}
	n = path.Clean(n)
	if strings.ContainsRune(n, 0) {
		return "", fmt.Errorf("%s: NUL in name", QuoteShort(name))
	}
	return n, nil
}

// Linux's limits on a path and on one of its components, in bytes.
const (
	pathMax = 4096
	nameMax = 255
)

// openDir returns an O_PATH descriptor of the directory rel (already cleaned)
// inside the tree. It fails if any component is a symlink or not a directory.
func (t *tree) openDir(rel string) (int, error) {
	if rel == "." || rel == "" {
		return unix.Dup(t.fd)
	}
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
	}
	for {
		fd, err := unix.Openat2(t.fd, rel, &how)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			return -1, err
		}
		return fd, nil
	}
}

// parent opens the directory that holds rel and returns it with rel's last
// component. With create set, missing parent directories are made (mode
// 0755): a layer may name a file without naming its directory first.
func (t *tree) parent(rel string, create bool) (int, string, error) {
	dir, base := path.Split(rel)
	dir = strings.TrimSuffix(dir, "/")
	if base == "" || base == "." || base == ".." {
		return -1, "", fmt.Errorf("invalid name %q", rel)
	}
	fd, err := t.openDir(dir)
	if errors.Is(err, unix.ENOENT) && create {
		if err = t.mkdirAll(dir); err == nil {
			fd, err = t.openDir(dir)
		}
	}
	if err != nil {
		return -1, "", err
	}
	return fd, base, nil
}

// mkdirAll creates rel and its parents as plain directories, refusing to
// pass through anything that is not a directory.
func (t *tree) mkdirAll(rel string) error {
	_, err := t.mkdirAllCounting(rel, nil)
	return err
}

// mkdirAllCounting is mkdirAll, returning how many directories it made;
// before it makes each it calls room, if set, which may refuse.
func (t *tree) mkdirAllCounting(rel string, room func() error) (made int, _ error) {
	if rel == "." || rel == "" {
		return 0, nil
	}
	fd, err := unix.Dup(t.fd)
	if err != nil {
		return 0, err
	}
	for _, c := range strings.Split(rel, "/") {
		if room != nil {
			var st unix.Stat_t
			if unix.Fstatat(fd, c, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				if err := room(); err != nil {
					unix.Close(fd)
					return made, err
				}
			}
		}
		err := unix.Mkdirat(fd, c, 0o755)
		if err != nil && err != unix.EEXIST {
			unix.Close(fd)
			return made, err
		}
		if err == nil {
			made++
		}
		next, err := unix.Openat2(fd, c, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC | unix.O_NOFOLLOW,
			Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
		})
		unix.Close(fd)
		if err != nil {
			return made, err // ENOTDIR or ELOOP: c exists and is not a directory
		}
		fd = next
	}
	return made, unix.Close(fd)
}

// lstatEntry opens the directory that holds rel (made, with its parents,
// when create is set) and lstats rel's last component in it: how both the
// unpacker and the flattener start to replace one entry with another, so
// both reach it the same way, without symlinks. A parent that cannot be
// reached is explained by parentError. The caller closes pfd (-1 on error).
func (t *tree) lstatEntry(rel string, create bool) (pfd int, base string, st unix.Stat_t, ok bool, err error) {
	pfd, base, err = t.parent(rel, create)
	if err != nil {
		return -1, "", st, false, parentError(err)
	}
	if st, ok, err = lstatAt(pfd, base); err != nil {
		unix.Close(pfd)
		return -1, "", st, false, err
	}
	return pfd, base, st, ok, nil
}

// lstat reports what is at base inside the directory dirfd, or ok=false.
func lstatAt(dirfd int, base string) (st unix.Stat_t, ok bool, err error) {
	err = unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == unix.ENOENT {
		return st, false, nil
	}
	return st, err == nil, err
}

// removeAt removes base inside dirfd, recursively if it is a directory,
// never following symlinks. A missing entry is not an error. Once stop
// (nil: never) is closed it gives up between two entries with errStopped.
func removeAt(dirfd int, base string, stop <-chan struct{}) error {
	err := unix.Unlinkat(dirfd, base, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	if err := clearDirAt(dirfd, base, stop); err != nil {
		return err
	}
	err = unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR)
	if err == unix.ENOENT {
		return nil
	}
	return err
}

// clearDirAt removes everything inside the directory base of dirfd
// (stop as for removeAt).
func clearDirAt(dirfd int, base string, stop <-chan struct{}) error {
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	// Read every name before removing any: deleting while iterating a
	// directory stream may skip entries.
	names, err := f.Readdirnames(-1)
	if err != nil {
		return err
	}
	for _, n := range names {
		select {
		case <-stop:
			return errStopped
		default:
		}
		if err := removeAt(fd, n, stop); err != nil {
			return err
		}
	}
	return nil
}

// mkdirMountPoint makes the directory p (absolute, as seen in the sandbox)
// inside the tree at root, with its parents, unless it exists. It fails
// rather than pass through a symlink or a non-directory.
func mkdirMountPoint(root, p string, made *atomic.Int64) error {
	rel, err := cleanName(p)
	if err != nil {
		return err
	}
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer t.Close()
	return t.mkdirMountPoint(rel, p, made)
}

// mkdirMountPoint makes rel (p as seen in the sandbox) and its parents in
// t, counting what it makes in made (nil: uncounted).
func (t *tree) mkdirMountPoint(rel, p string, made *atomic.Int64) error {
	var room func() error
	if made != nil {
		room = func() error {
			if made.Add(1) > maxMountPointDirs {
				made.Add(-1)
				return errTooManyMountPoints
			}
			return nil
		}
	}
	if _, err := t.mkdirAllCounting(rel, room); err != nil {
		return fmt.Errorf("mount point %s: %w", p, parentError(err))
	}
	return nil
}

// maxMountPointDirs bounds the directories actions' mount points (their
// InputRootAbsolutePath) may add to one image's shared tree, in which
// they stay: unbounded, twenty actions with paths of 64 levels added
// 1,280 directories, counted by nothing, and an attacker could go on
// until the disk's inodes ran out. A farm's actions use a few paths.
const maxMountPointDirs = 1000

var errTooManyMountPoints = fmt.Errorf("actions have made %d directories in the image's shared tree for their input roots (InputRootAbsolutePath), the most one image takes; use a path the image has, or one used before", maxMountPointDirs)

// mkfileMountPoint makes an empty regular file at p (absolute, as seen in
// the sandbox) inside the tree at root, with its parent directories (made
// counts them, as for mkdirMountPoint), unless it exists. It fails rather
// than pass through a symlink or a non-directory, or when p is there but
// not a regular file.
func mkfileMountPoint(root, p string, made *atomic.Int64) error {
	rel, err := cleanName(p)
	if err != nil {
		return err
	}
	t, err := openTree(root)
	if err != nil {
		return err
	}
	defer t.Close()
	if dir := path.Dir(rel); dir != "." {
		if err := t.mkdirMountPoint(dir, "/"+dir, made); err != nil {
			return err
		}
	}
	pfd, base, st, ok, err := t.lstatEntry(rel, false)
	if err != nil {
		return fmt.Errorf("mount point %s: %w", p, err)
	}
	defer unix.Close(pfd)
	if !ok {
		fd, err := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
		if err == nil {
			return unix.Close(fd)
		}
		if err != unix.EEXIST {
			return fmt.Errorf("mount point %s: %w", p, err)
		}
		if st, ok, err = lstatAt(pfd, base); err != nil || !ok {
			return fmt.Errorf("mount point %s: made by another and gone: %v", p, err)
		}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fmt.Errorf("mount point %s: the image has it, and not as a regular file", p)
	}
	return nil
}
