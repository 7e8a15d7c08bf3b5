package asset

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"time"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// Qualifiers FetchBlob understands when it downloads from origin, besides
// the header qualifiers (http_header.go).
const (
	// qualifierChecksum is an SRI checksum the content must match.
	qualifierChecksum = "checksum.sri"
	// qualifierCanonicalID is Bazel's canonical_id: it only tells records
	// apart, which it does as part of the record key.
	qualifierCanonicalID = "bazel.canonical_id"
)

// fetchServer answers Fetch from records, and FetchBlob of http(s) URLs by
// downloading.
type fetchServer struct {
	rapb.UnimplementedFetchServer
	opts  Options
	idx   *index
	dl    *downloader
	slots *storage.TenantSlots // downloads in progress (download_slots.go)
}

// requestFunction is the digest function of a fetch: SHA-256 when unset,
// as the API says.
func requestFunction(fn digest.Function) (digest.Function, error) {
	if fn == repb.DigestFunction_UNKNOWN {
		return repb.DigestFunction_SHA256, nil
	}
	if _, err := digest.CheckFunction(fn); err != nil {
		return 0, err
	}
	return fn, nil
}

// fetchRequest is what FetchBlob and FetchDirectory requests share.
type fetchRequest struct {
	instance   string
	uris       []string
	qualifiers []*rapb.Qualifier
	function   digest.Function
	oldest     *timestamppb.Timestamp
}

// lookup checks a fetch request and finds its live record (nil when there
// is none), refusing an instance name ByteStream cannot address
// (rev2.CheckInstanceName) before anything is downloaded: the blob would
// be stored in a CAS partition no client could read it from. The header
// qualifiers of a FetchBlob that may download are checked before the
// records too, so that whether one is refused does not depend on what
// is recorded. It returns the request's digest function too.
func (s *fetchServer) lookup(ctx context.Context, k kind, req fetchRequest) (digest.Function, *found, error) {
	if err := rev2.CheckInstanceName(req.instance); err != nil {
		return 0, nil, err
	}
	if err := checkRequest(req.uris, req.qualifiers); err != nil {
		return 0, nil, err
	}
	if k == kindBlob && slices.ContainsFunc(req.uris, isHTTP) {
		if _, refused := parseHeaders(req.qualifiers, req.uris); refused != nil {
			return 0, nil, badQualifiers([]*errdetails.BadRequest_FieldViolation{refused})
		}
	}
	fn, err := requestFunction(req.function)
	if err != nil {
		return 0, nil, err
	}
	f, err := s.idx.lookup(ctx, req.instance, k, fn, req.uris, req.qualifiers, oldestAccepted(req.oldest))
	return fn, f, err
}

func oldestAccepted(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

func expiresAt(r record) *timestamppb.Timestamp {
	if r.ExpireAt.IsZero() {
		return nil
	}
	return timestamppb.New(r.ExpireAt)
}

// FetchBlob answers from a live, complete record, else downloads the first
// http(s) URI that works; a failure is reported as readsFetchStatus says.
func (s *fetchServer) FetchBlob(ctx context.Context, req *rapb.FetchBlobRequest) (*rapb.FetchBlobResponse, error) {
	resp, err := s.fetchBlob(storage.WithInstance(ctx, req.InstanceName), req)
	return fetchReply(ctx, resp, err)
}

// fetchBlob answers from a record (see lookup) or downloads.
func (s *fetchServer) fetchBlob(ctx context.Context, req *rapb.FetchBlobRequest) (*rapb.FetchBlobResponse, error) {
	fn, f, err := s.lookup(ctx, kindBlob, fetchRequest{req.InstanceName, req.Uris, req.Qualifiers, req.DigestFunction, req.OldestContentAccepted})
	if err != nil {
		return nil, err
	}
	if f != nil && !s.stillVerified(ctx, f.digest, req.Qualifiers) {
		f = nil // fetched again, and refused if the collision is still there
	}
	if f != nil {
		return &rapb.FetchBlobResponse{Status: status.New(codes.OK, "").Proto(), Uri: f.uri, Qualifiers: withoutHeaders(req.Qualifiers),
			ExpiresAt: expiresAt(f.rec), BlobDigest: f.digest.Proto(), DigestFunction: f.digest.Function()}, nil
	}
	if !slices.ContainsFunc(req.Uris, isHTTP) {
		return &rapb.FetchBlobResponse{
			Status: status.New(codes.NotFound, "no record for these URIs and qualifiers, and none is an http(s) URL to download").Proto(),
			Uri:    req.Uris[0],
		}, nil
	}
	sum, hdrs, err := s.originQualifiers(req.Qualifiers, req.Uris)
	if err != nil {
		return nil, err
	}
	var timeout time.Duration
	if req.Timeout != nil {
		timeout = req.Timeout.AsDuration()
	}
	var failed *rapb.FetchBlobResponse
	for i, uri := range req.Uris {
		if !isHTTP(uri) {
			continue
		}
		d, err := s.download(ctx, uri, hdrs.of(i), sum, fn, timeout)
		if err != nil {
			if st, ok := status.FromError(err); ok && isOriginFailure(st.Code()) {
				s.opts.Logger.Info("asset fetch failed", "uri", redactURL(uri), "code", st.Code(), "error", logDetail(err))
				failed = &rapb.FetchBlobResponse{Status: st.Proto(), Uri: uri}
				continue
			}
			return nil, err
		}
		rec := record{Hash: d.Hash(), Size: d.SizeBytes(), Function: int32(fn), Created: s.opts.Now()}
		if err := s.idx.store(req.InstanceName, kindBlob, []string{uri}, req.Qualifiers, rec); err != nil {
			return nil, err
		}
		s.opts.Logger.Info("asset fetched", "uri", redactURL(uri), "digest", d.String())
		return &rapb.FetchBlobResponse{Status: status.New(codes.OK, "").Proto(), Uri: uri, Qualifiers: withoutHeaders(req.Qualifiers),
			BlobDigest: d.Proto(), DigestFunction: fn}, nil
	}
	return failed, nil
}

// isHTTP reports whether uri is an http(s) URL: schemes are
// case-insensitive (RFC 3986), and url.Parse lowers them.
func isHTTP(uri string) bool {
	u, err := url.Parse(uri)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https")
}

// isOriginFailure tells the downloader's codes for failures outside the
// server's control (reported in the response's status) from the server's
// own errors (returned as the call's error).
func isOriginFailure(c codes.Code) bool {
	switch c {
	case codes.DeadlineExceeded, codes.NotFound, codes.PermissionDenied, codes.Aborted,
		codes.ResourceExhausted, codes.Unavailable, codes.InvalidArgument:
		return true
	}
	return false
}

// originQualifiers checks the qualifiers of a download from uris:
// each must be one the server honours (REv2: unsupported ones are
// INVALID_ARGUMENT, with a BadRequest detail), headers must be ones a
// client may set (http_header.go), and a checksum is required unless the
// operator allows fetching without one. It returns the checksum, if any,
// and the headers.
func (s *fetchServer) originQualifiers(qs []*rapb.Qualifier, uris []string) (*checksum, originHeaders, error) {
	var bad []*errdetails.BadRequest_FieldViolation
	for _, q := range qs {
		if q.Name != qualifierChecksum && q.Name != qualifierCanonicalID && !isHeaderQualifier(q.Name) {
			bad = append(bad, &errdetails.BadRequest_FieldViolation{Field: "qualifiers.name", Description: fmt.Sprintf("%q not supported", q.Name)})
		}
	}
	if len(bad) > 0 {
		return nil, originHeaders{}, badQualifiers(bad)
	}
	hdrs, refused := parseHeaders(qs, uris)
	if refused != nil {
		return nil, originHeaders{}, badQualifiers([]*errdetails.BadRequest_FieldViolation{refused})
	}
	v, ok := qualifier(qs, qualifierChecksum)
	if !ok {
		if s.opts.AllowWithoutChecksum {
			return nil, hdrs, nil
		}
		return nil, originHeaders{}, status.Errorf(codes.InvalidArgument, "qualifiers: %s is required: this server does not fetch content it cannot verify", qualifierChecksum)
	}
	sum, err := parseSRI(v)
	if err != nil {
		return nil, originHeaders{}, status.Errorf(codes.InvalidArgument, "qualifiers: %v", err)
	}
	return &sum, hdrs, nil
}

// badQualifiers is INVALID_ARGUMENT for bad, the first one in its message.
func badQualifiers(bad []*errdetails.BadRequest_FieldViolation) error {
	st := status.Newf(codes.InvalidArgument, "qualifiers: %s", bad[0].Description)
	if withDetail, err := st.WithDetails(&errdetails.BadRequest{FieldViolations: bad}); err == nil {
		st = withDetail
	}
	return st.Err()
}

// stillVerified reports whether blob d, a record's, still matches the
// request's checksum. Only a SHA-1 digest can name other bytes than
// those verified when the record was made: evicted, the blob can come
// back as another with the same SHA-1 (SHAttered), uploaded by anyone
// who may write the CAS.
func (s *fetchServer) stillVerified(ctx context.Context, d digest.Digest, qs []*rapb.Qualifier) bool {
	if d.Function() != repb.DigestFunction_SHA1 {
		return true
	}
	v, ok := qualifier(qs, qualifierChecksum)
	if !ok {
		return true
	}
	sum, err := parseSRI(v)
	if err != nil {
		return false
	}
	got, err := storedSum(ctx, s.opts.CAS, d, sum)
	return err == nil && bytes.Equal(got, sum.sum)
}

// download fetches uri and stores it in the CAS. timeout (the request's,
// at most FetchTimeout) bounds the wait for a download slot too: a fetch
// behind others' slow downloads ends DEADLINE_EXCEEDED when its time is
// up, as one waiting for a slow origin does, rather than start late.
func (s *fetchServer) download(ctx context.Context, uri string, hdr http.Header, sum *checksum, fn digest.Function, timeout time.Duration) (digest.Digest, error) {
	if timeout <= 0 || timeout > s.opts.FetchTimeout {
		timeout = s.opts.FetchTimeout
	}
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done, err := s.slots.Take(dctx)
	if err != nil {
		if ctx.Err() == nil {
			return digest.Digest{}, status.Errorf(codes.DeadlineExceeded, "no download slot came free within %s (this server runs %d downloads at once, %d per tenant, or per client without an auth policy)", timeout, MaxDownloads, MaxDownloads/2)
		}
		return digest.Digest{}, err
	}
	defer done()
	f, d, err := s.dl.download(dctx, uri, hdr, sum, fn, timeout)
	if err != nil {
		return digest.Digest{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := s.opts.CAS.Put(ctx, d, f); err != nil {
		return digest.Digest{}, status.Errorf(status.Code(err), "store %s: %v", d, err)
	}
	if sum != nil && fn == repb.DigestFunction_SHA1 {
		// A CAS that holds d already keeps what it holds, and SHA-1
		// digests collide (SHAttered): the blob under d may be another
		// than the one verified, and a record would serve it under the
		// request's checksum.
		got, err := storedSum(ctx, s.opts.CAS, d, *sum)
		if err != nil {
			return digest.Digest{}, status.Errorf(status.Code(err), "check stored %s: %v", d, err)
		}
		if !bytes.Equal(got, sum.sum) {
			return digest.Digest{}, status.Errorf(codes.FailedPrecondition, "the CAS holds other content under the SHA-1 digest %s than the download that matched %s %s (a SHA-1 collision); fetch with digest_function SHA256", d, qualifierChecksum, sum)
		}
	}
	return d, nil
}

// FetchDirectory serves pushed directories only: this server does not
// unpack archives from origin.
func (s *fetchServer) FetchDirectory(ctx context.Context, req *rapb.FetchDirectoryRequest) (*rapb.FetchDirectoryResponse, error) {
	resp, err := s.fetchDirectory(storage.WithInstance(ctx, req.InstanceName), req)
	return fetchReply(ctx, resp, err)
}

func (s *fetchServer) fetchDirectory(ctx context.Context, req *rapb.FetchDirectoryRequest) (*rapb.FetchDirectoryResponse, error) {
	_, f, err := s.lookup(ctx, kindDirectory, fetchRequest{req.InstanceName, req.Uris, req.Qualifiers, req.DigestFunction, req.OldestContentAccepted})
	if err != nil {
		return nil, err
	}
	if f == nil {
		return &rapb.FetchDirectoryResponse{
			Status: status.New(codes.NotFound, "no pushed directory for these URIs and qualifiers (directories are served from Push only)").Proto(),
			Uri:    req.Uris[0],
		}, nil
	}
	return &rapb.FetchDirectoryResponse{Status: status.New(codes.OK, "").Proto(), Uri: f.uri, Qualifiers: withoutHeaders(req.Qualifiers),
		ExpiresAt: expiresAt(f.rec), RootDirectoryDigest: f.digest.Proto(), DigestFunction: f.digest.Function()}, nil
}
