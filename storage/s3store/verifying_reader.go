package s3store

import (
	"encoding/hex"
	"hash"
	"io"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// verifyingReader streams an object's whole body and yields exactly the
// blob's size-offset bytes. It hashes every byte, those before offset
// included (read and dropped at the first Read: a resumed read costs the
// bytes it skips, but a corrupt object is never served, even in part that
// the client would have to notice), and the Read that reaches the end
// checks the hash before it returns its bytes: on a mismatch it returns
// the DATA_LOSS error of onBad (which removes the object) instead, so a
// corrupt blob is never delivered whole.
// A body that ends early is a transport failure (UNAVAILABLE); one that
// goes on past the size is corrupt.
type verifyingReader struct {
	body    io.ReadCloser
	d       digest.Digest
	h       hash.Hash
	skip    int64 // bytes before the offset, still to be hashed and dropped
	left    int64
	onBad   func() error
	lastErr error
}

func newVerifyingReader(body io.ReadCloser, d digest.Digest, offset int64, onBad func() error) *verifyingReader {
	return &verifyingReader{body: body, d: d, h: d.NewHasher(), skip: offset, left: d.SizeBytes() - offset, onBad: onBad}
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	if v.lastErr != nil {
		return 0, v.lastErr
	}
	if len(p) == 0 {
		return 0, nil
	}
	if v.skip > 0 {
		n, err := io.CopyN(v.h, v.body, v.skip)
		if v.skip -= n; err != nil {
			v.lastErr = status.Errorf(codes.Unavailable, "read blob %s from S3: the object's body ended %d bytes short", v.d, v.skip+v.left)
			if err != io.EOF {
				v.lastErr = statusError("read blob "+v.d.String()+" from S3", err)
			}
			return 0, v.lastErr
		}
	}
	if int64(len(p)) > v.left {
		p = p[:v.left]
	}
	n, err := v.body.Read(p)
	v.h.Write(p[:n])
	v.left -= int64(n)
	if v.left == 0 {
		if v.lastErr = v.finish(); v.lastErr != io.EOF {
			return 0, v.lastErr
		}
		return n, nil
	}
	switch {
	case err == io.EOF:
		v.lastErr = status.Errorf(codes.Unavailable, "read blob %s from S3: the object's body ended %d bytes short", v.d, v.left)
		return n, v.lastErr
	case err != nil:
		v.lastErr = statusError("read blob "+v.d.String()+" from S3", err)
		return n, v.lastErr
	}
	return n, nil
}

// finish checks, once size bytes have been read, that the body ends there
// and that they hash to the digest.
func (v *verifyingReader) finish() error {
	var one [1]byte
	if n, _ := io.ReadFull(v.body, one[:]); n > 0 {
		return v.onBad()
	}
	if hex.EncodeToString(v.h.Sum(nil)) != v.d.Hash() {
		return v.onBad()
	}
	return io.EOF
}

// Close releases the object's body (a reader closed early aborts the GET).
func (v *verifyingReader) Close() error { return v.body.Close() }
