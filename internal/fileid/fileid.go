// Package fileid identifies a file's content as the kernel last reported
// it, so that a file hashed once need not be hashed again until it changes.
package fileid

import "golang.org/x/sys/unix"

// ID is a file's device, inode, size and last modification and change
// times. If any of them differs from when a file was hashed, its bytes may
// have changed since. (A change through the block device, under the
// filesystem, goes unseen: only fs-verity or hashing every read sees that.)
type ID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime unix.Timespec
}

// Stat returns the ID of the file at p, following symlinks.
func Stat(p string) (ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return ID{}, err
	}
	return ID{uint64(st.Dev), st.Ino, st.Size, st.Mtim, st.Ctim}, nil
}
