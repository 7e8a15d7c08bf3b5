// Package fileid identifies a file's content as the kernel last reported
// it, so that a file hashed once need not be hashed again until it changes.
package fileid

import "golang.org/x/sys/unix"

// ID is a file's device, inode, size and last modification time. If any
// of them differs from when a file was hashed, its bytes may have changed
// since. The change time is left out on purpose: every hard link made to
// a cached file (one per input root that uses it) changes it, and would
// make every use hash the file again. What goes unseen: a change whose
// writer then set the modification time back (which takes the file's
// owner, root), and a change through the block device, under the
// filesystem; only fs-verity, or hashing every read, sees those. The
// storage's background scrub hashes every blob again in time.
type ID struct {
	dev, ino uint64
	size     int64
	mtime    unix.Timespec
}

// Stat returns the ID of the file at p, following symlinks.
func Stat(p string) (ID, error) {
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return ID{}, err
	}
	return ID{uint64(st.Dev), st.Ino, st.Size, st.Mtim}, nil
}
