package asset

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// pushServer records URIs and qualifiers against content already in the
// CAS. Content must be complete when pushed (REv2 puts that on the client;
// checking it turns a client bug into a clear FAILED_PRECONDITION instead
// of a record that is never served).
type pushServer struct {
	rapb.UnimplementedPushServer
	idx *index
	now func() time.Time
}

func (s *pushServer) PushBlob(ctx context.Context, req *rapb.PushBlobRequest) (*rapb.PushBlobResponse, error) {
	if err := s.push(ctx, req.InstanceName, pushRequest{kindBlob, req.Uris, req.Qualifiers, req.ExpireAt, req.DigestFunction,
		req.BlobDigest, "blob_digest", req.ReferencesBlobs, req.ReferencesDirectories}); err != nil {
		return nil, err
	}
	return &rapb.PushBlobResponse{}, nil
}

func (s *pushServer) PushDirectory(ctx context.Context, req *rapb.PushDirectoryRequest) (*rapb.PushDirectoryResponse, error) {
	if err := s.push(ctx, req.InstanceName, pushRequest{kindDirectory, req.Uris, req.Qualifiers, req.ExpireAt, req.DigestFunction,
		req.RootDirectoryDigest, "root_directory_digest", req.ReferencesBlobs, req.ReferencesDirectories}); err != nil {
		return nil, err
	}
	return &rapb.PushDirectoryResponse{}, nil
}

// maxReferences bounds each of a push's references_blobs and
// references_directories. Every record of the push holds them (as
// maxRequestRecordBytes counts), and every Fetch that finds it checks
// each is still in the CAS, walking each referenced tree. BuildStream, the
// client known to send them, references an artifact's metadata, logs and
// public data, and its files, build tree, sources and sandboxes: about a
// dozen.
const maxReferences = 1000

// pushRequest is what PushBlob and PushDirectory have in common.
type pushRequest struct {
	kind               kind
	uris               []string
	qualifiers         []*rapb.Qualifier
	expireAt           *timestamppb.Timestamp
	fn                 digest.Function
	digest             *repb.Digest
	field              string // the digest's field, for messages
	refBlobs, refTrees []*repb.Digest
}

// push validates p and stores its record for instance, whose CAS
// partition its content must be in: PushBlob and PushDirectory differ only
// in the fields p is made of.
func (s *pushServer) push(ctx context.Context, instance string, p pushRequest) error {
	// A record under a name ByteStream cannot address would point at
	// content no client could read.
	if err := rev2.CheckInstanceName(instance); err != nil {
		return err
	}
	ctx = storage.WithInstance(ctx, instance) // the CAS partition
	rec, err := s.prepare(ctx, p)
	if err != nil {
		return err
	}
	return s.idx.store(instance, p.kind, p.uris, p.qualifiers, rec)
}

// prepare validates a push and returns the record to store.
func (s *pushServer) prepare(ctx context.Context, p pushRequest) (record, error) {
	if err := checkRequest(p.uris, p.qualifiers); err != nil {
		return record{}, err
	}
	fn, err := digest.CheckFunction(p.fn)
	if err != nil {
		return record{}, err
	}
	dg, err := digest.FromProto(fn, p.digest, p.field)
	if err != nil {
		return record{}, err
	}
	now := s.now()
	rec := record{Hash: dg.Hash(), Size: dg.SizeBytes(), Function: int32(dg.Function()), Created: now}
	if p.expireAt != nil {
		if err := p.expireAt.CheckValid(); err != nil {
			return record{}, status.Errorf(codes.InvalidArgument, "expire_at: %v", err)
		}
		if rec.ExpireAt = p.expireAt.AsTime(); !rec.ExpireAt.After(now) {
			return record{}, status.Errorf(codes.InvalidArgument, "expire_at: %s is not in the future", rec.ExpireAt.Format(time.RFC3339))
		}
	}
	for _, refs := range []struct {
		field string
		list  []*repb.Digest
	}{{"references_blobs", p.refBlobs}, {"references_directories", p.refTrees}} {
		if len(refs.list) > maxReferences {
			return record{}, status.Errorf(codes.InvalidArgument, "%s: %d digests, more than the %d a push may reference", refs.field, len(refs.list), maxReferences)
		}
	}
	for i, r := range p.refBlobs {
		rd, err := digest.FromProto(dg.Function(), r, fmt.Sprintf("references_blobs[%d]", i))
		if err != nil {
			return record{}, err
		}
		rec.RefBlobs = append(rec.RefBlobs, ref(rd))
	}
	for i, r := range p.refTrees {
		rd, err := digest.FromProto(dg.Function(), r, fmt.Sprintf("references_directories[%d]", i))
		if err != nil {
			return record{}, err
		}
		rec.RefTrees = append(rec.RefTrees, ref(rd))
	}
	// Before the content is checked: a push too large to record is
	// refused on its own terms, without reading the CAS. store checks
	// again, for every writer.
	if err := checkRecordBytes(p.uris, withQualifiers(rec, p.kind, p.qualifiers)); err != nil {
		return record{}, err
	}
	if err := s.idx.complete(ctx, p.kind, dg, rec.RefBlobs, rec.RefTrees); status.Code(err) == codes.NotFound {
		return record{}, status.Errorf(codes.FailedPrecondition, "%s %s: upload the content to the CAS before pushing: %s", p.field, dg, grpcerr.Convert(err).Message())
	} else if err != nil {
		return record{}, err
	}
	if p.kind == kindBlob {
		if err := s.checkPushedChecksum(ctx, p.qualifiers, dg); err != nil {
			return record{}, err
		}
	}
	return rec, nil
}

// checkPushedChecksum refuses a blob pushed with a checksum.sri qualifier
// its content does not match. FetchBlob answers a request carrying that
// qualifier from the record alone, so a record trusted as pushed would
// hand every later client whatever the pusher chose, under the checksum
// of something else.
func (s *pushServer) checkPushedChecksum(ctx context.Context, qs []*rapb.Qualifier, dg digest.Digest) error {
	v, ok := qualifier(qs, qualifierChecksum)
	if !ok {
		return nil
	}
	sum, err := parseSRI(v)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "qualifiers: %v", err)
	}
	got, err := storedSum(ctx, s.idx.cas, dg, sum)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, sum.sum) {
		return status.Errorf(codes.InvalidArgument, "qualifiers: %s %s does not match blob_digest %s, whose content is %s-%s",
			qualifierChecksum, sum, dg, sum.algorithm, base64.StdEncoding.EncodeToString(got))
	}
	return nil
}

// storedSum is the hash, of sum's algorithm, of blob dg as the CAS holds it.
func storedSum(ctx context.Context, cas storage.BlobStore, dg digest.Digest, sum checksum) ([]byte, error) {
	r, err := cas.Get(ctx, dg, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	h := sum.newHash()
	if _, err := io.Copy(h, r); err != nil {
		return nil, fmt.Errorf("read blob_digest %s: %w", dg, err)
	}
	return h.Sum(nil), nil
}
