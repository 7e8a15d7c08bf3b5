package digest

import (
	"encoding/hex"
	"hash"
	"io"
)

// VerifyingReader serves a stored blob from an offset on while it hashes
// every byte from the first, those before the offset included (read and
// dropped at the first Read: a resumed read costs the bytes it skips, but
// no part of a corrupt blob is served that the client would have to
// notice). The Read that reaches the blob's end checks the hash before it
// returns its bytes and, on a mismatch, returns the store's error instead,
// so a corrupt blob is never delivered whole. The stores that keep blobs
// at rest, on disk and in S3, and the remote store, which passes on
// another CAS's, serve them through it, so the rule is written once. (The
// memory store keeps the bytes it verified at Put.)
//
// An error is sticky: once a Read has returned one, every later Read
// returns it again.
type VerifyingReader struct {
	src    io.ReadCloser
	d      Digest
	h      hash.Hash
	skip   int64 // bytes before the offset, still to be hashed and dropped
	left   int64 // bytes from the offset on, still to be served
	checks VerifyChecks
	err    error
}

// VerifyChecks are what a store does when a blob's bytes disagree with
// its digest: each returns the error its reader returns from then on.
// Bad and Short are both required.
type VerifyChecks struct {
	// Bad is called once when the bytes do not hash to the digest (or go
	// on past its size, with Trailing). It typically removes the stored
	// copy and returns DATA_LOSS.
	Bad func() error
	// Short is called once when the source fails, or ends (err is
	// io.EOF), with missing bytes of the blob not yet read. A disk file
	// that shrank is corrupt; an object's body that broke off is a
	// transport failure.
	Short func(missing int64, err error) error
	// Trailing reads one byte past the blob's end to check that the
	// source ends there, for a source whose length was not checked
	// before (a response that did not state it).
	Trailing bool
}

// NewVerifyingReader returns src, which holds the whole blob d from its
// first byte, served from offset on. Close closes src.
func NewVerifyingReader(src io.ReadCloser, d Digest, offset int64, checks VerifyChecks) *VerifyingReader {
	return &VerifyingReader{src: src, d: d, h: d.NewHasher(), skip: offset, left: d.SizeBytes() - offset, checks: checks}
}

// Read implements io.Reader.
func (v *VerifyingReader) Read(p []byte) (int, error) {
	if v.err != nil {
		return 0, v.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	if v.skip > 0 {
		n, err := io.CopyN(v.h, v.src, v.skip)
		if v.skip -= n; err != nil {
			v.err = v.checks.Short(v.skip+v.left, err)
			return 0, v.err
		}
	}
	var n int
	var err error
	if v.left > 0 {
		if int64(len(p)) > v.left {
			p = p[:v.left]
		}
		n, err = v.src.Read(p)
		v.h.Write(p[:n])
		v.left -= int64(n)
	}
	if v.left == 0 {
		if v.err = v.finish(); v.err != io.EOF || n == 0 {
			return 0, v.err
		}
		return n, nil
	}
	if err != nil {
		v.err = v.checks.Short(v.left, err)
		return n, v.err
	}
	return n, nil
}

// finish checks, once every byte of the blob has been read, that they
// hash to the digest (and, with Trailing, that the source ends there).
func (v *VerifyingReader) finish() error {
	if v.checks.Trailing {
		var one [1]byte
		if n, _ := io.ReadFull(v.src, one[:]); n > 0 {
			return v.checks.Bad()
		}
	}
	if hex.EncodeToString(v.h.Sum(nil)) != v.d.Hash() {
		return v.checks.Bad()
	}
	return io.EOF
}

// Close closes the source (a reader closed early aborts a remote read).
func (v *VerifyingReader) Close() error { return v.src.Close() }
