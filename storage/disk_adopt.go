package storage

import (
	"context"
	"errors"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/atomicfile"
)

// ErrCannotAdopt is Adopt's error when the file cannot be linked into the
// store (another filesystem, say): the caller stores a copy instead.
var ErrCannotAdopt = errors.New("the file cannot be linked into the CAS")

// Adopt stores the open regular file f as blob d by giving it a name in
// the store, as Put would have given a copy: no bytes are copied and no
// inode is made. It is for the worker of `paddock up`, whose build
// directories share the store's filesystem, and whose outputs would
// otherwise be read, sent over loopback gRPC and written again. The
// caller vouches for f: that it holds d's bytes (it hashed them), and
// that nothing but this process can change them any more (owned by this
// process's user, read-only, with no writer anywhere: worker's
// outputAdoption). The store counts and evicts it like any blob.
func (s *DiskBlobStore) Adopt(ctx context.Context, d digest.Digest, f *os.File) error {
	if stored, err := s.admit(d); stored || err != nil {
		return err
	}
	// Linking takes no room on the filesystem: asking statfs for the
	// blob's size beside the headroom evicted every blob and refused an
	// output that, linked, left the headroom free.
	res := &reservation{d: d, inPlace: true}
	defer s.release(res)
	if err := s.grow(ctx, res, d.SizeBytes()); err != nil {
		return err
	}
	tmp, err := atomicfile.Existing(f)
	if err != nil {
		return s.writeFailed(res, err)
	}
	defer tmp.Abort()
	if err := s.commit(d, tmp, res); err != nil {
		if errors.Is(err, unix.EXDEV) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOENT) {
			return ErrCannotAdopt
		}
		return s.writeFailed(res, err)
	}
	return nil
}
