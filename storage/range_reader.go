package storage

import (
	"context"
	"encoding/hex"
	"hash"
	"io"
)

// copyContext is io.Copy that stops when ctx is done. Its buffer holds
// at most copyBufferBytes, and no more than the max bytes src is expected
// to yield (limit): most blobs are small (an action's stdout, a Command),
// and a large buffer for each was most of the farm's garbage per action.
func copyContext(ctx context.Context, dst io.Writer, src io.Reader, limit int64) (int64, error) {
	buf := make([]byte, min(copyBufferBytes, max(1, limit)))
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

// copyBufferBytes bounds copyContext's buffer. A ByteStream upload's Put
// holds it for the upload's whole life, parked or not: at 256 KiB, one
// tenant's 2,400 half-done uploads of 1 MB blobs held 595 MB of buffers
// (and took `paddock up` to 3.4 GB). 32 KiB writes no slower:
// BenchmarkByteStreamWrite gave 217–243 MB/s for 1 MiB blobs against
// 198–245 MB/s at 256 KiB, and about 800 MB/s for 256 MiB with either.
const copyBufferBytes = 32 << 10

func hexSum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// rangeReader serves the first left bytes of r, then reads r to its end
// unseen before it returns its last bytes: the stores verify a blob's
// hash on the read that reaches its end (digest.VerifyingReader), so a
// read_limit that stopped short of it served a corrupt blob's bytes with
// OK. The rest is read, not skipped, as a whole read would read it; if it
// turns out corrupt, the error is returned in place of the range's last
// bytes.
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
