package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// Adopter is a CAS on the build directories' filesystem that takes a file
// as it is, by a hard link (storage.DiskBlobStore.Adopt): the disk CAS of
// `paddock up`, unpartitioned, which is the store every instance writes
// to. It must not be a cache in front of another store, which would then
// never get the blob.
type Adopter interface {
	// Adopt stores f as blob d; storage.ErrCannotAdopt says to copy it
	// instead.
	Adopt(ctx context.Context, d digest.Digest, f *os.File) error
}

// outputAdoption lets the CAS keep an action's output files as they are
// instead of a copy: no read into memory, no upload, no second inode (on
// an ext4 without a journal each new inode costs a scan past every one
// freed in the last minute), and the output's own inode is not freed.
//
// The inode was the sandbox's, so it is made the worker's before the CAS
// takes it, and taken only if nothing of the action's can change it
// afterwards. Its action has ended (the collector runs only after Run
// came back); then, in this order:
//   - it has one link (no other name, such as an input's, which the CAS or
//     the file cache hold) and no blocks reserved past its bytes;
//   - it is given to the worker's uid and gid, made read-only (0444) and
//     dated now (the action chose its times: a channel to whoever reads
//     the inode next, and a date the CAS orders eviction by): no sandbox
//     id can open it for writing from here on, nor change its mode,
//     attributes or times;
//   - it has the inode flags and extended attributes of a file the worker
//     made (none an action set: ACLs, capabilities, user attributes,
//     nodump, verity...);
//   - no open file anywhere can write it: the kernel grants a read lease
//     only then (fcntl(2) F_SETLEASE), counting descriptors sent over
//     UNIX sockets and still in flight, and shared writable mappings. The
//     lease is given back at once.
//
// Then it is hashed from the same descriptor and linked into the CAS. A
// file that fails any step is copied as before; one failing after the
// chown stays the worker's, which changes nothing for the copy.
type outputAdoption struct {
	cas      Adopter
	ref      inodeState // of a file the worker made in the build directory
	uid, gid int
}

// newOutputAdoption returns the adoption into cas of outputs in dir's
// filesystem, or nil if cas is nil or dir's filesystem cannot make the
// unnamed file it compares outputs with (then every output is copied).
func newOutputAdoption(cas Adopter, dir string) (*outputAdoption, error) {
	if cas == nil {
		return nil, nil
	}
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, nil
	}
	defer unix.Close(fd)
	ref, err := readInodeState(fd)
	if err != nil {
		return nil, fmt.Errorf("output adoption: probe file: %w", err)
	}
	return &outputAdoption{cas: cas, ref: ref, uid: os.Geteuid(), gid: os.Getegid()}, nil
}

// adopt stores the output file f in the CAS as it is, if it may, and
// returns its digest; false (and no error) means copy it instead.
func (a *outputAdoption) adopt(ctx context.Context, fn digest.Function, f *os.File) (digest.Digest, bool, error) {
	fd := int(f.Fd())
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 1 {
		return digest.Digest{}, false, nil
	}
	if blk := max(int64(st.Blksize), 512); st.Blocks*512 > (st.Size+blk-1)/blk*blk+st.Size/64+blk {
		return digest.Digest{}, false, nil // blocks reserved past its size: the CAS counts bytes
	}
	if unix.Fchown(fd, a.uid, a.gid) != nil || unix.Fchmod(fd, 0o444) != nil || touchNow(fd) != nil {
		return digest.Digest{}, false, nil
	}
	if s, err := readInodeState(fd); err != nil || !s.sameAttrs(a.ref) || !noWriters(fd) {
		return digest.Digest{}, false, nil
	}
	d, err := digest.FromReader(fn, io.NewSectionReader(f, 0, st.Size))
	if err != nil {
		return digest.Digest{}, false, err
	}
	if d.SizeBytes() != st.Size {
		return digest.Digest{}, false, nil // cannot be, with no writer
	}
	if err := a.cas.Adopt(ctx, d, f); err != nil {
		if errors.Is(err, storage.ErrCannotAdopt) {
			return digest.Digest{}, false, nil
		}
		return digest.Digest{}, false, err
	}
	return d, true, nil
}

// noWriters reports whether no open file, in any process or in flight,
// can write fd's inode: the kernel grants a read lease only then. The
// lease is let go at once; from here on only root could open the file
// for writing.
func noWriters(fd int) bool {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		return false
	}
	_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK)
	return true
}
