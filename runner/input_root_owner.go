package runner

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"
)

// chownDirectories gives every directory of the input root (never a file
// or symlink, never following one) to the sandbox user's host ids, so the
// action can create its outputs. Files stay the worker's: read-only and
// owned by a uid the sandbox does not map, so the action can neither
// write nor chmod them.
//
// It returns what each directory takes (dirBytes), by inode: what the
// worker handed over, which the disk guard does not count against the
// action's quota (givenDirs). Taken on this walk, which stats only
// directories, rather than on one of the guard's, which stats every file:
// the input root of a large compile has thousands.
//
// It walks by descriptors, as walkTree does: each directory is opened
// relative to its parent (O_NOFOLLOW), chowned and statted through its
// descriptor, and read from it. A walk by path name resolved every
// directory's whole path three times (to list it, chown it and stat it),
// the runner's largest cost per action after gRPC, and failed with
// ENAMETOOLONG below PATH_MAX, which an input root of nested long names
// reaches.
func chownDirectories(root string, uid, gid int) (givenDirs, error) {
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", root, err)
	}
	o := &dirOwner{uid: uid, gid: gid, given: givenDirs{}, buf: make([]byte, walkBufSize)}
	if err := o.dir(fd); err != nil {
		return nil, fmt.Errorf("%s: %w", root, err)
	}
	return o.given, nil
}

// dirOwner is one chownDirectories walk.
type dirOwner struct {
	uid, gid int
	given    givenDirs
	buf      []byte // getdents buffer, shared: a directory is read whole before its subdirectories are walked
}

// dir gives the directory open as fd, and those below it; it closes fd.
// It holds one descriptor per level of the walk.
func (o *dirOwner) dir(fd int) error {
	defer unix.Close(fd)
	if err := unix.Fchown(fd, o.uid, o.gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	o.given[st.Ino] = dirBytes(&st)
	subdirs, err := o.subdirs(fd)
	if err != nil {
		return err
	}
	for _, name := range subdirs {
		sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: open: %w", name, err)
		}
		if err := o.dir(sub); err != nil {
			return fmt.Errorf("%s/%w", name, err)
		}
	}
	return nil
}

// subdirs returns the names of the directories in the directory fd, by
// the type getdents gives, or by a stat that does not follow a symlink
// where the filesystem gives none.
func (o *dirOwner) subdirs(fd int) ([]string, error) {
	var names []string
	for {
		n, err := unix.Getdents(fd, o.buf)
		if err != nil {
			return nil, fmt.Errorf("read directory: %w", err)
		}
		if n <= 0 {
			return names, nil
		}
		// struct linux_dirent64: ino (8 bytes), off (8), reclen (2),
		// type (1), then the name, NUL-terminated.
		for b := o.buf[:n]; len(b) >= 19; {
			reclen := int(binary.NativeEndian.Uint16(b[16:]))
			if reclen < 19 || reclen > len(b) {
				return nil, fmt.Errorf("read directory: a record of %d bytes", reclen)
			}
			typ, name := b[18], b[19:reclen]
			if i := bytes.IndexByte(name, 0); i >= 0 {
				name = name[:i]
			}
			b = b[reclen:]
			if s := string(name); s != "." && s != ".." && o.isDir(fd, s, typ) {
				names = append(names, s)
			}
		}
	}
}

func (o *dirOwner) isDir(fd int, name string, typ byte) bool {
	if typ != unix.DT_UNKNOWN {
		return typ == unix.DT_DIR
	}
	var st unix.Stat_t
	return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}
