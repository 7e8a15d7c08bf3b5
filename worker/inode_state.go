package worker

import (
	"bytes"
	"errors"
	"slices"

	"golang.org/x/sys/unix"
)

// inodeState is what the worker compares of an inode an action had before
// it reuses it (dirPool) or lets the CAS keep it (outputAdoption): against
// that of an inode it just made itself, on the same filesystem.
type inodeState struct {
	uid, gid uint32
	mode     uint32 // permission bits
	dir      bool
	nlink    uint64
	size     int64
	flags    uint32 // FS_IOC_GETFLAGS: nodump, encrypted, casefold, verity...
	flagsErr error
	xattrs   []byte // names, as listxattr gives them: ACLs, file capabilities...
	values   [][]byte
}

// readInodeState reads the state of the open inode fd.
func readInodeState(fd int) (inodeState, error) {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return inodeState{}, err
	}
	s := inodeState{uid: st.Uid, gid: st.Gid, mode: st.Mode & 0o7777, dir: st.Mode&unix.S_IFMT == unix.S_IFDIR, nlink: uint64(st.Nlink), size: st.Size}
	s.flags, s.flagsErr = unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	var err error
	if s.xattrs, err = listXattrs(fd); err != nil {
		return s, err
	}
	for _, name := range bytes.Split(bytes.TrimSuffix(s.xattrs, []byte{0}), []byte{0}) {
		if len(name) == 0 {
			continue
		}
		v, err := getXattr(fd, string(name))
		if err != nil {
			return s, err
		}
		s.values = append(s.values, v)
	}
	return s, nil
}

// sameAttrs reports whether s has the inode flags and extended attributes
// (names and values) of ref.
func (s inodeState) sameAttrs(ref inodeState) bool {
	return s.flags == ref.flags && (s.flagsErr == nil) == (ref.flagsErr == nil) &&
		bytes.Equal(s.xattrs, ref.xattrs) && slices.EqualFunc(s.values, ref.values, bytes.Equal)
}

// listXattrs returns the names of fd's extended attributes; none where
// the filesystem has none.
func listXattrs(fd int) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Flistxattr(fd, buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			buf = make([]byte, 2*len(buf))
			if len(buf) > 1<<16 {
				return nil, err
			}
			continue
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return buf[:n], nil
	}
}

// getXattr returns the value of fd's attribute name.
func getXattr(fd int, name string) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Fgetxattr(fd, name, buf)
		if errors.Is(err, unix.ERANGE) && len(buf) < 1<<16 {
			buf = make([]byte, 2*len(buf))
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n], nil
	}
}
