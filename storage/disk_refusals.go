package storage

import (
	"errors"
	"fmt"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// A DiskBlobStore refuses a blob, RESOURCE_EXHAUSTED, when it cannot make
// room for it: the filesystem said it is full, the rest of the disk is
// kept free for the farm (disk_room.go), uploads in progress hold all of
// MaxBytes (disk_reserve.go), or the blob alone is larger than MaxBytes.
// Each refusal is counted by its reason (the operator's first sign of a
// disk too small, before the clients' retries give up), and its message
// names the blob and the reason in full: the call that carried it
// (BatchUpdateBlobs, ByteStream Write) is named by the service.

// refusalReason is why a blob was refused for want of room: the value of
// the metric's reason label.
type refusalReason string

const (
	refusedDiskFull        refusalReason = "disk_full"         // the filesystem said ENOSPC or EDQUOT
	refusedDiskKeptFree    refusalReason = "disk_kept_free"    // others' files leave only the room kept free
	refusedUploadsInFlight refusalReason = "uploads_in_flight" // uploads in progress hold all of MaxBytes
	refusedOverBound       refusalReason = "larger_than_bound" // the blob alone costs more than MaxBytes or its filesystem
)

var refusalReasons = []refusalReason{refusedDiskFull, refusedDiskKeptFree, refusedUploadsInFlight, refusedOverBound}

// refusalCounts are a store's refusals by reason, each reason present from
// the start (at 0) so that a rate over it is defined. Read at each scrape
// (disk_metrics.go), where a store of a partition is labelled with it.
type refusalCounts map[refusalReason]*atomic.Int64

func newRefusals() refusalCounts {
	c := refusalCounts{}
	for _, r := range refusalReasons {
		c[r] = new(atomic.Int64)
	}
	return c
}

// refuse counts a refusal of blob d and returns its error, whose message
// is the blob, "not stored", and why. A blob larger than the whole store
// can hold is INVALID_ARGUMENT: asking again cannot help, and clients
// (paddock run, Bazel) retry RESOURCE_EXHAUSTED, sending the whole blob
// each time (a 410 MB blob for a 400 MiB disk went 13 times).
func (s *DiskBlobStore) refuse(reason refusalReason, d digest.Digest, why string) error {
	s.refusals[reason].Add(1)
	if reason == refusedOverBound {
		return largerThanStore{status.Newf(codes.InvalidArgument, "blob %s not stored: %s", d, why)}
	}
	return status.Errorf(codes.ResourceExhausted, "blob %s not stored: %s", d, why)
}

// ErrLargerThanStore matches (errors.Is) a store's refusal of a blob
// larger than it can ever hold: INVALID_ARGUMENT for its clients, but a
// store in front of another (a cache) reads past it, as it does past a
// full one, rather than fail the read.
var ErrLargerThanStore = errors.New("blob larger than the store can hold")

// largerThanStore is that refusal: its status for gRPC, and
// ErrLargerThanStore for errors.Is.
type largerThanStore struct{ st *status.Status }

func (e largerThanStore) Error() string              { return e.st.Err().Error() }
func (e largerThanStore) GRPCStatus() *status.Status { return e.st }
func (e largerThanStore) Is(target error) bool       { return target == ErrLargerThanStore }

// largeBlobBytes: a blob at least this large is checked against the
// whole of the CAS's filesystem before it is written (one statfs); a
// smaller one cannot be larger than any filesystem a CAS runs on.
const largeBlobBytes = 1 << 20

// checkFitsDisk refuses blob d, of size bytes, when it is larger than
// the CAS's filesystem could hold beside the room kept free for the rest
// of the farm, however much were evicted.
func (s *DiskBlobStore) checkFitsDisk(d digest.Digest) error {
	if d.SizeBytes() < largeBlobBytes {
		return nil
	}
	r, err := statRoom(s.dir)
	if err != nil {
		return nil // makeRoom says so when it matters
	}
	hb, _ := headroom(r)
	if room := int64(r.totalBytes - min(hb, r.totalBytes)); s.cost(d.SizeBytes()) > room {
		return s.refuse(refusedOverBound, d, fmt.Sprintf("it is larger than the CAS's whole filesystem can hold (%d bytes, less %d kept free for the rest of the farm)", r.totalBytes, hb))
	}
	return nil
}
