package storage

import (
	"errors"
	"fmt"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// How a DiskBlobStore's Put holds room for its blob while it writes, and
// the errors of a write that failed.

// reservation is the room a Put in progress holds for its blob.
type reservation struct {
	bytes    int64
	released bool
}

// reserve counts d's size as in flight until release, evicting stored
// blobs to make room for it. Without it, uploads that are slow or parked
// for a resume (each a file in tmp/ the size of its blob) were bounded
// only one by one, and a client holding many of them filled the disk
// whatever MaxBytes said. When the uploads already in progress leave no
// room, the Put is RESOURCE_EXHAUSTED, which clients retry later.
func (s *DiskBlobStore) reserve(d digest.Digest) (*reservation, error) {
	res := &reservation{bytes: d.SizeBytes()}
	if s.maxBytes <= 0 {
		return res, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight+res.bytes > s.maxBytes {
		return nil, status.Errorf(codes.ResourceExhausted, "blob %s not stored now: uploads of %d bytes are in progress, and with this one they would be more than the CAS holds (%d bytes); try again later", d, s.inflight, s.maxBytes)
	}
	s.inflight += res.bytes
	s.evictLocked()
	return res, nil
}

// release ends res, if the Put did not already.
func (s *DiskBlobStore) release(res *reservation) {
	s.mu.Lock()
	s.releaseLocked(res)
	s.mu.Unlock()
}

func (s *DiskBlobStore) releaseLocked(res *reservation) {
	if !res.released && s.maxBytes > 0 {
		s.inflight -= res.bytes
	}
	res.released = true
}

// writeFailed is the error for a failed write of blob d; a full disk
// first has room made, so that the client's retry finds it.
func (s *DiskBlobStore) writeFailed(d digest.Digest, err error) error {
	if diskFull(err) {
		_ = s.makeRoom(d.SizeBytes()) // the error says the disk is full already
	}
	return writeError(d, err)
}

// writeError is the error for a failed write of blob d.
func writeError(d digest.Digest, err error) error {
	return diskWriteError("blob "+d.String(), "the CAS's disk", err)
}

// diskWriteError is the error for a failed write of what to a store on
// disk. A full disk is RESOURCE_EXHAUSTED, which clients may retry later;
// no message names a host path (an *os.PathError's would); the client's
// own errors (a broken stream, a cancelled context) pass through.
func diskWriteError(what, disk string, err error) error {
	var errno syscall.Errno
	switch {
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return status.Errorf(codes.ResourceExhausted, "%s not stored: %s is full", what, disk)
	case errors.As(err, &errno):
		return status.Errorf(codes.Internal, "%s not stored: %v", what, errno)
	}
	return fmt.Errorf("write %s: %w", what, err)
}
