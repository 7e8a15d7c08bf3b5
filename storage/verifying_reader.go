package storage

import (
	"context"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// verifyingReader hashes a blob from its first byte while serving bytes from
// offset on. The read that reaches the blob's end checks the hash before it
// returns its bytes, and on a mismatch returns DATA_LOSS instead, so a
// corrupt blob is never delivered whole.
type verifyingReader struct {
	f       *os.File
	d       digest.Digest
	h       hash.Hash
	left    int64 // bytes not yet read from f
	onBad   func()
	lastErr error
}

func newVerifyingReader(f *os.File, d digest.Digest, offset int64, onBad func()) (io.ReadCloser, error) {
	v := &verifyingReader{f: f, d: d, h: d.NewHasher(), left: d.SizeBytes(), onBad: onBad}
	if offset > 0 {
		if _, err := io.CopyN(v.h, f, offset); err != nil {
			f.Close()
			return nil, fmt.Errorf("read blob %s: %w", d, err)
		}
		v.left -= offset
	}
	if v.left == 0 {
		v.finish()
	}
	return v, nil
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.lastErr != nil {
		return 0, v.lastErr
	}
	if int64(len(p)) > v.left {
		p = p[:v.left]
	}
	n, err := v.f.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if v.left == 0 {
		if v.finish(); v.lastErr != io.EOF {
			return 0, v.lastErr
		}
		return n, nil
	}
	if err == io.EOF {
		// The size was checked at open: the file shrank under us.
		v.onBad()
		v.lastErr = status.Errorf(codes.DataLoss, "blob %s was truncated in storage and has been removed", v.d)
		return 0, v.lastErr
	}
	return n, err
}

// finish checks the hash once every byte has been read.
func (v *verifyingReader) finish() {
	v.lastErr = io.EOF
	if hexSum(v.h) != v.d.Hash() {
		v.onBad()
		v.lastErr = status.Errorf(codes.DataLoss, "blob %s is corrupt in storage and has been removed; upload it again", v.d)
	}
}

func (v *verifyingReader) Close() error { return v.f.Close() }

// copyContext is io.Copy that stops when ctx is done. Its buffer holds
// at most 256 KiB, and no more than the max bytes src is expected to
// yield (limit): most blobs are small (an action's stdout, a Command), and
// a 256 KiB buffer for each was most of the farm's garbage per action.
func copyContext(ctx context.Context, dst io.Writer, src io.Reader, limit int64) (int64, error) {
	buf := make([]byte, min(256<<10, max(1, limit)))
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, err := src.Read(buf)
		if m > 0 {
			if _, werr := dst.Write(buf[:m]); werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

var _ BlobStore = (*DiskBlobStore)(nil)

// rangeReader serves the first left bytes of r, then reads r to its end
// unseen before it returns its last bytes: the stores verify a blob's
// hash on the read that reaches its end (verifyingReader), so a read_limit
// that stopped short of it served a corrupt blob's bytes with OK. The
// rest is read, not skipped, as a whole read would read it; if it turns
// out corrupt, the error is returned in place of the range's last bytes.
type rangeReader struct {
	r    io.Reader
	left int64
}

func (l *rangeReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	if l.left > 0 || err != nil {
		return n, err
	}
	if _, err := io.Copy(io.Discard, l.r); err != nil {
		return 0, err
	}
	return n, nil
}
