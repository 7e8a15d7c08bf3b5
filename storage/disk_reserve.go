package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
)

// How a DiskBlobStore's Put holds room for its blob while it writes, and
// the errors of a write that failed.

// reservation is the room a Put in progress holds for its blob until
// release: the bytes written so far, rounded up (reservedWriter grows it as
// they arrive, evicting stored blobs to make room), never more than the
// blob's size. Without reservations, uploads that are slow or parked for a
// resume (each a file in tmp/ the size of its blob) were bounded only one
// by one, and a client holding many of them filled the disk whatever
// MaxBytes said. Nothing is reserved that no byte has yet backed:
// reserving the size a resource name declares let one byte sent for a
// blob declared as large as the CAS evict every blob, and reserving a
// first MiB up front still let a few hundred one-byte uploads, parked,
// evict every blob and refuse every other upload for the minute they
// stayed parked. What the uploads in progress hold is at most twice what
// they have sent, as costly to hold as storing it. When they leave no
// room, uploads parked for a resume give way (withGiveWay, from the
// Put's context); when they still leave none, the Put is
// RESOURCE_EXHAUSTED, which clients retry later.
//
// The bytes covered are counted at what a file of that many bytes costs
// (diskCost: whole blocks and an inode, as the upload's file in tmp/
// takes). So a Put whose bytes have all arrived holds exactly what its
// blob costs once stored, and its commit moves that from in flight to
// stored unchanged: the two counts cannot drift apart, nor their total
// jump at a commit.
type reservation struct {
	d        digest.Digest
	bytes    int64 // of the blob covered
	cost     int64 // what they cost: s.cost(bytes) once any are covered, held in inflight
	released bool
	// inPlace marks an Adopt's: the blob's file is on the store's
	// filesystem already, so storing it is counted (max_bytes) but takes
	// no room there; only the headroom is kept free.
	inPlace bool
}

// grow raises res to want bytes (at most the blob's size): counted in
// flight at their cost, with stored blobs evicted to fit beside it, and
// room for it made on the disk; parked uploads give way, one at a time,
// while the uploads in progress or the disk leave no room (giveWayFrom
// ctx, the Put's). The evicted blobs' files are removed before it returns,
// with mu released: this Put waits for the room it asked for, no other
// call does (disk_unlink.go).
func (s *DiskBlobStore) grow(ctx context.Context, res *reservation, want int64) error {
	want = min(want, res.d.SizeBytes())
	if want <= res.bytes {
		return nil
	}
	cost := s.cost(want)
	more := cost - res.cost
	if more <= 0 { // within the blocks held already
		res.bytes = want
		return nil
	}
	if s.maxBytes > 0 {
		s.mu.Lock()
		for s.inflight+more > s.maxBytes {
			inflight := s.inflight
			s.mu.Unlock()
			if !giveWayFrom(ctx) {
				return s.refuse(refusedUploadsInFlight, res.d, fmt.Sprintf("uploads in progress hold %d bytes of disk, and with this one they would hold more than the CAS may (max_bytes %d); try again later", inflight, s.maxBytes))
			}
			s.mu.Lock()
		}
		s.inflight += more
		res.bytes, res.cost = want, cost
		doomed, _ := s.evictLocked()
		s.mu.Unlock()
		s.unlink(doomed)
	} else {
		res.bytes, res.cost = want, cost
	}
	need := more
	if res.inPlace {
		need = 0
	}
	for {
		err := s.makeRoom(need)
		if err == nil {
			return nil
		}
		if !giveWayFrom(ctx) {
			return s.refuse(refusedDiskKeptFree, res.d, grpcerr.Convert(err).Message())
		}
	}
}

// reservedWriter writes a Put's bytes to its file, growing its
// reservation ahead of them: to twice what is written, so that a blob
// takes a few reservations, not one a write.
type reservedWriter struct {
	ctx     context.Context // the Put's
	s       *DiskBlobStore
	res     *reservation
	w       io.Writer
	written int64
	refused error // the reservation could not grow: the Put's error
}

func (w *reservedWriter) Write(p []byte) (int, error) {
	if need := w.written + int64(len(p)); need > w.res.bytes {
		if err := w.s.grow(w.ctx, w.res, max(need, 2*w.res.bytes)); err != nil {
			w.refused = err
			return 0, err
		}
	}
	n, err := w.w.Write(p)
	w.written += int64(n)
	return n, err
}

// release ends res, if the Put did not already.
func (s *DiskBlobStore) release(res *reservation) {
	s.mu.Lock()
	s.releaseLocked(res)
	s.mu.Unlock()
}

func (s *DiskBlobStore) releaseLocked(res *reservation) {
	if !res.released && s.maxBytes > 0 {
		s.inflight -= res.cost
	}
	res.released = true
}

// writeFailed is the error for a failed write of blob d; a full disk
// first has room made for what the Put had reserved, so that the client's
// retry finds it.
func (s *DiskBlobStore) writeFailed(res *reservation, err error) error {
	if diskFull(err) {
		_ = s.makeRoom(res.cost) // the error says the disk is full already
		return s.refuse(refusedDiskFull, res.d, fmt.Sprintf("the CAS's disk is full (%v)", errnoOf(err)))
	}
	return writeError(res.d, err)
}

// writeError is the error for a failed write of blob d.
func writeError(d digest.Digest, err error) error {
	return diskWriteError("blob "+d.String(), "the CAS's disk", err)
}

// errnoOf is err's errno, without the path an *os.PathError names.
func errnoOf(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	return err
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
