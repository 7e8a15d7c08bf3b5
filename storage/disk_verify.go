package storage

import (
	"context"
	"encoding/hex"
	"io"
	"os"
	"time"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/fileid"
)

// A blob's file is hashed again before it is handed out by path (Path),
// the first time after start-up and whenever the kernel reports a change
// since it was last hashed; Get verifies as it streams. So a byte flipped
// at rest, or a truncation, is caught before the worker hard-links the file
// into an input root: the blob is removed and reported missing, and the
// client uploads it again. Hashing on every link would cost a read of every
// input of every action; remembering the file's identity costs one stat.
//
// fs-verity would let the kernel check every read instead. It needs the
// filesystem's verity feature (ext4 -O verity, off by default, and off on
// the machines we test on), so it is not used; see docs/runner.md.

// Has reports whether d is stored, from the index alone: no file is
// touched (Path verifies).
func (s *DiskBlobStore) Has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.lookupLocked(d)
	return ok
}

// Path returns the file holding d, for callers on the same machine that
// hard-link blobs (the worker's input roots), once its bytes are known to
// match d (see above); a corrupt file is removed and d reported absent. The
// file is read-only; it may be evicted at any time, after which existing
// links still work.
func (s *DiskBlobStore) Path(d digest.Digest) (string, bool) {
	s.mu.Lock()
	e, ok := s.lookupLocked(d)
	var known fileid.ID
	if ok {
		known = e.verified
	}
	s.mu.Unlock()
	if !ok {
		return "", false
	}
	p := s.path(d)
	id, err := fileid.Stat(p)
	if err != nil {
		s.forget(d, "file vanished")
		return "", false
	}
	if id == known {
		return p, true
	}
	v, _, _ := s.verifying.Do(d.String(), func() (any, error) { return s.verifyFile(d, p, id), nil })
	if !v.(bool) {
		return "", false
	}
	return p, true
}

// verifyFile hashes p, the file of d last seen as id. A match is
// remembered (unless the file changed while it was read); a mismatch
// removes the blob.
func (s *DiskBlobStore) verifyFile(d digest.Digest, p string, id fileid.ID) bool {
	f, err := os.Open(p)
	if err != nil {
		s.forget(d, "file vanished")
		return false
	}
	s.verifyHashes.Add(1)
	h := d.NewHasher()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil || n != d.SizeBytes() || hex.EncodeToString(h.Sum(nil)) != d.Hash() {
		s.verifyFailures.Add(1)
		s.corrupt(d, "bytes do not match digest (found before use)")
		return false
	}
	if after, err := fileid.Stat(p); err == nil && after == id {
		s.remember(d, id)
	}
	return true
}

// remember records that d's file, as id, holds d's bytes.
func (s *DiskBlobStore) remember(d digest.Digest, id fileid.ID) {
	s.mu.Lock()
	if e, ok := s.lookupLocked(d); ok {
		e.verified = id
	}
	s.mu.Unlock()
}

// VerifyFailures is how many blobs were found corrupt before use.
func (s *DiskBlobStore) VerifyFailures() int64 { return s.verifyFailures.Load() }

// VerifyHashes is how many times Path hashed a file to verify it.
func (s *DiskBlobStore) VerifyHashes() int64 { return s.verifyHashes.Load() }

// Scrub hashes every blob again, verified before or not, at most
// bytesPerSecond (0: no limit), removing corrupt ones, until done
// or ctx ends. It returns how many blobs it checked and found corrupt.
func (s *DiskBlobStore) Scrub(ctx context.Context, bytesPerSecond int64) (checked, corrupt int) {
	var ds []digest.Digest
	for _, k := range s.set.Keys() {
		if e, ok := s.set.Peek(k); ok {
			ds = append(ds, e.d)
		}
	}
	start, done := time.Now(), int64(0)
	for _, d := range ds {
		if ctx.Err() != nil {
			break
		}
		// Hashed whatever the file's identity says: bit rot under the
		// filesystem changes no modification time.
		p := s.path(d)
		if id, err := fileid.Stat(p); err == nil && !s.verifyFile(d, p, id) {
			corrupt++
		}
		checked++
		done += d.SizeBytes()
		if bytesPerSecond > 0 {
			ahead := time.Duration(float64(done)/float64(bytesPerSecond)*float64(time.Second)) - time.Since(start)
			if ahead > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(ahead):
				}
			}
		}
	}
	return checked, corrupt
}

// scrubLoop runs Scrub at rate a minute after start (start-up's own work
// first), then every interval, for the life of the process, logging what
// it found.
func (s *DiskBlobStore) scrubLoop(rate int64, interval time.Duration) {
	wait := time.Minute
	for {
		time.Sleep(wait)
		start := time.Now()
		checked, corrupt := s.Scrub(context.Background(), rate)
		s.log.Info("CAS scrub done", "checked", checked, "corrupt", corrupt, "took", time.Since(start).Round(time.Second))
		wait = interval
	}
}
