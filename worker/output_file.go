package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// smallFile is the size below which an output is read once into memory
// rather than read twice (hash, then upload).
const smallFile = 1 << 20

// uploadFile uploads the regular file name in directory dirFd, or has
// the CAS keep it as it is (outputAdoption).
func (c *outputCollector) uploadFile(ctx context.Context, dirFd int, name string) (digest.Digest, error) {
	fd, err := unix.Openat(dirFd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return digest.Digest{}, err
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	if c.adoption != nil {
		if d, ok, err := c.adoption.adopt(ctx, c.fn, f); ok || err != nil {
			return d, err
		}
	}
	return c.uploadOpen(ctx, f)
}

// uploadStream uploads the action's stdout or stderr from the file at p,
// which the runner wrote; an absent file is the empty blob. It is
// uploaded as an output file is, never read whole: each stream may be as
// large as the runner's output_limit (64 MiB), and read whole, an action
// writing both cost the worker 128 MiB that no sandbox is charged for,
// times the actions running at once.
func (c *outputCollector) uploadStream(ctx context.Context, p string) (digest.Digest, error) {
	f, err := os.Open(p)
	if errors.Is(err, os.ErrNotExist) {
		return digest.Empty(c.fn), nil
	}
	if err != nil {
		return digest.Digest{}, status.Errorf(codes.Internal, "read output stream: %v", err)
	}
	defer f.Close()
	return c.uploadOpen(ctx, f)
}

// uploadOpen uploads the open regular file f. A small one is read once
// and staged for flush; a larger one is hashed, then uploaded from the
// file by a section reader, which a storage.WriteSource can read again
// for a retry: memory stays a copy buffer whatever the size.
func (c *outputCollector) uploadOpen(ctx context.Context, f *os.File) (digest.Digest, error) {
	info, err := f.Stat()
	if err != nil {
		return digest.Digest{}, err
	}
	if !info.Mode().IsRegular() {
		return digest.Digest{}, fmt.Errorf("not a regular file")
	}
	if info.Size() <= smallFile {
		// Read as large as it was: once the action is gone nothing
		// writes it, and the buffer stays bounded if something did.
		b := make([]byte, info.Size())
		n, err := io.ReadFull(f, b)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return digest.Digest{}, err
		}
		return c.uploadBytes(ctx, b[:n])
	}
	d, err := digest.FromReader(c.fn, f)
	if err != nil {
		return digest.Digest{}, err
	}
	if missing, err := c.cas.FindMissing(ctx, []digest.Digest{d}); err != nil {
		return digest.Digest{}, err
	} else if len(missing) == 0 {
		return d, nil
	}
	if err := c.cas.Put(ctx, d, io.NewSectionReader(f, 0, d.SizeBytes())); err != nil {
		return digest.Digest{}, err
	}
	return d, nil
}
