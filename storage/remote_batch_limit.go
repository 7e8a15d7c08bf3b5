package storage

import (
	"context"
	"fmt"
	"math"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// A remote refuses a batch over its max_batch_total_size_bytes with
// INVALID_ARGUMENT, which clients do not retry: a front that batched up to
// a fixed 1 MiB failed every blob between a remote's 256 KiB limit and
// 1 MiB, reads and writes alike. So a RemoteBlobStore asks the remote's
// CacheCapabilities for its limit and sends a blob by ByteStream, which
// has no size limit, when its batch would not fit.
//
// What fits is counted as the whole message, not only the blobs' bytes:
// the spec bounds the "total size of blobs", and Paddock's server counts
// only those, but other servers advertise their gRPC message limit, which
// the digests and framing count against. Counting them fits both.

const (
	// limitUnknown is RemoteBlobStore.limit before the remote has said.
	limitUnknown = -1
	// remoteBatchCap bounds a batch whatever the remote advertises: 0 is
	// "no limit" in the spec, but such a server most likely keeps gRPC's
	// default message limit of 4 MiB, and a batch is held whole in memory
	// on both sides.
	remoteBatchCap = 4 << 20
	// remoteEntrySlack is what an entry of a batch request or reply adds
	// beside its digest and bytes (a compressor field, an OK status), and
	// a request beside its instance name (the digest function), with room
	// to spare.
	remoteEntrySlack = 16
)

// batchLimit returns the largest batch message to send to the remote, or
// to ask of it, learning the remote's limit on the first call that needs
// it: not at start, so that a front starts while its remote is down.
// While the remote cannot be reached it returns the error (the call would
// fail the same way; under a waiting interceptor, trying the call as well
// would wait twice). A remote without the Capabilities service (a
// non-conforming cache) keeps the configured bound; other refusals use it
// for this call and ask again on the next.
func (s *RemoteBlobStore) batchLimit(ctx context.Context) (int64, error) {
	if l := s.limit.Load(); l != limitUnknown {
		return l, nil
	}
	caps, err := s.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{InstanceName: s.instance(ctx)})
	switch status.Code(err) {
	case codes.OK:
		l := int64(remoteBatchCap)
		if adv := caps.GetCacheCapabilities().GetMaxBatchTotalSizeBytes(); adv > 0 {
			l = min(l, adv)
		}
		if s.opts.MaxBatchBytes > 0 {
			l = min(l, s.opts.MaxBatchBytes)
		}
		s.limit.Store(l)
		return l, nil
	case codes.Unimplemented:
		s.limit.Store(s.fallbackLimit())
		return s.fallbackLimit(), nil
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return 0, fmt.Errorf("remote GetCapabilities (for its batch limit): %w", err)
	}
	return s.fallbackLimit(), nil
}

// fallbackLimit is the batch limit while the remote's is not known: the
// configured bound, or none (every blob by ByteStream).
func (s *RemoteBlobStore) fallbackLimit() int64 {
	return min(max(s.opts.MaxBatchBytes, 0), remoteBatchCap)
}

// fitsBatch tells whether d alone fits a batch of limit bytes for
// instance.
func fitsBatch(d digest.Digest, instance string, limit int64) bool {
	return batchHeaderCost(instance)+batchEntryCost(d) <= limit
}

// splitBatches packs ds, in order, into batches for instance of at most
// limit bytes each; alone are the blobs too large for any batch.
func splitBatches(ds []digest.Digest, instance string, limit int64) (batches [][]digest.Digest, alone []digest.Digest) {
	header := batchHeaderCost(instance)
	var cur []digest.Digest
	size := header
	for _, d := range ds {
		cost := batchEntryCost(d)
		if header+cost > limit {
			alone = append(alone, d)
			continue
		}
		if size+cost > limit {
			batches, cur, size = append(batches, cur), nil, header
		}
		cur = append(cur, d)
		size += cost
	}
	if len(cur) > 0 {
		batches = append(batches, cur)
	}
	return batches, alone
}

// groupByFunction splits ds by digest function, as a request carries one.
func groupByFunction(ds []digest.Digest) map[digest.Function][]digest.Digest {
	out := map[digest.Function][]digest.Digest{}
	for _, d := range ds {
		out[d.Function()] = append(out[d.Function()], d)
	}
	return out
}

// batchHeaderCost is what a batch request for instance carries beside its
// entries.
func batchHeaderCost(instance string) int64 {
	return fieldBytes(int64(len(instance))) + remoteEntrySlack
}

// batchEntryCost is what blob d adds to a batch request or to the reply
// to one: a length-delimited entry holding its digest, its bytes and
// remoteEntrySlack.
func batchEntryCost(d digest.Digest) int64 {
	if d.SizeBytes() > maxEntryCost {
		// No batch holds it; and the sums below must not wrap, which
		// made a declared size near 2^63 look small enough to batch
		// (and so be read whole into memory by Put).
		return maxEntryCost
	}
	return fieldBytes(fieldBytes(int64(proto.Size(d.Proto()))) + fieldBytes(d.SizeBytes()) + remoteEntrySlack)
}

// maxEntryCost is what batchEntryCost says of a blob no batch can hold:
// far above any limit, and small enough that adding a header or a batch
// of other entries to it cannot overflow an int64.
const maxEntryCost = math.MaxInt64 / 4

// fieldBytes is the size of a length-delimited protobuf field of n bytes
// with a one-byte tag (field numbers up to 15).
func fieldBytes(n int64) int64 {
	return 1 + int64(protowire.SizeVarint(uint64(n))) + n
}
