package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// wantStatus fails unless err has code and its message contains every one
// of the fragments (the field or path it names).
func wantStatus(t *testing.T, err error, code codes.Code, fragments ...string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("got %v, want %s", err, code)
	}
	for _, f := range fragments {
		if !strings.Contains(st.Message(), f) {
			t.Fatalf("message %q does not name %q", st.Message(), f)
		}
	}
}

func TestCapabilities(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{MaxBatchTotalSizeBytes: 1 << 20})
	caps, err := ts.caps.GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cc := caps.CacheCapabilities
	if caps.LowApiVersion.Major != 2 || caps.LowApiVersion.Minor != 0 {
		t.Errorf("low_api_version %v, want 2.0 (Bazel 2.x-4.x speak only 2.0)", caps.LowApiVersion)
	}
	if caps.HighApiVersion.Major != 2 || caps.HighApiVersion.Minor < 11 {
		t.Errorf("high_api_version %v", caps.HighApiVersion)
	}
	if cc.MaxBatchTotalSizeBytes != 1<<20 {
		t.Errorf("max_batch_total_size_bytes %d", cc.MaxBatchTotalSizeBytes)
	}
	if cc.SymlinkAbsolutePathStrategy != repb.SymlinkAbsolutePathStrategy_DISALLOWED {
		t.Errorf("symlink strategy %v", cc.SymlinkAbsolutePathStrategy)
	}
	if len(cc.SupportedCompressors) != 1 || cc.SupportedCompressors[0] != repb.Compressor_ZSTD {
		t.Errorf("supported_compressors %v", cc.SupportedCompressors)
	}
	if !cc.ActionCacheUpdateCapabilities.GetUpdateEnabled() {
		t.Error("action cache updates not enabled")
	}
	if cc.DigestFunctions[0] != repb.DigestFunction_SHA256 {
		t.Errorf("digest_functions %v", cc.DigestFunctions)
	}
	// Blob splitting and splicing are not served: REv2 says a server that
	// serves them MUST declare it, and clients check before using them.
	if cc.GetSplitBlobSupport() || cc.GetSpliceBlobSupport() {
		t.Errorf("split %v / splice %v advertised, but not served", cc.GetSplitBlobSupport(), cc.GetSpliceBlobSupport())
	}
}

func TestMalformedDigestsAreInvalidArgument(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	good := sha("x").Proto()
	for name, tc := range map[string]struct {
		d    *repb.Digest
		want string
	}{
		"short hash":     {&repb.Digest{Hash: "abc", SizeBytes: 1}, "blob_digests[1]"},
		"uppercase hash": {&repb.Digest{Hash: strings.ToUpper(good.Hash), SizeBytes: 1}, "lowercase"},
		"non-hex hash":   {&repb.Digest{Hash: strings.Repeat("g", 64), SizeBytes: 1}, "hexadecimal"},
		"negative size":  {&repb.Digest{Hash: good.Hash, SizeBytes: -1}, "negative"},
		"missing digest": {nil, "blob_digests[1]"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ts.cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{good, tc.d}})
			wantStatus(t, err, codes.InvalidArgument, tc.want)
			// BatchReadBlobs reports it in the entry's status (REv2: every
			// error on individual read); the other entry is still read.
			resp, err := ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{good, tc.d}})
			if err != nil {
				t.Fatalf("BatchReadBlobs: %v", err)
			}
			wantStatus(t, status.ErrorProto(resp.Responses[1].Status), codes.InvalidArgument, "digests[1]")
			wantStatus(t, status.ErrorProto(resp.Responses[0].Status), codes.NotFound)
			_, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: tc.d})
			wantStatus(t, err, codes.InvalidArgument, "action_digest")
			_, err = ts.cas.GetTree(ctx, &repb.GetTreeRequest{RootDigest: tc.d})
			if err == nil {
				_, err = recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: tc.d})
			}
			wantStatus(t, err, codes.InvalidArgument, "root_digest")
		})
	}
	// A digest function the server does not support.
	_, err := ts.cas.FindMissingBlobs(ctx, &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{good}, DigestFunction: repb.DigestFunction_MD5})
	wantStatus(t, err, codes.InvalidArgument, "digest_function")
}

func TestBatchUpdateBlobsPerEntryStatus(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	good, bad, short := sha("good"), sha("expected"), sha("longer data")
	enc, _ := zstd.NewWriter(nil)
	zdata := bytes.Repeat([]byte("compressible "), 1000)
	zd := digest.FromBytes(repb.DigestFunction_SHA256, zdata)
	resp, err := ts.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: good.Proto(), Data: []byte("good")},
		{Digest: bad.Proto(), Data: []byte("tampered")},
		{Digest: short.Proto(), Data: []byte("longer")},
		{Digest: &repb.Digest{Hash: "nothex", SizeBytes: 4}, Data: []byte("good")},
		{Digest: zd.Proto(), Data: enc.EncodeAll(zdata, nil), Compressor: repb.Compressor_ZSTD},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []codes.Code{codes.OK, codes.InvalidArgument, codes.InvalidArgument, codes.InvalidArgument, codes.OK}
	for i, r := range resp.Responses {
		if codes.Code(r.Status.Code) != want[i] {
			t.Errorf("entry %d: status %v, want %s", i, r.Status, want[i])
		}
	}
	if !strings.Contains(resp.Responses[2].Status.Message, "requests[2]") {
		t.Errorf("size mismatch message does not name the entry: %q", resp.Responses[2].Status.Message)
	}
	m := missing(t, ts.disk, good, bad, short, zd)
	if m[good] || !m[bad] || !m[short] || m[zd] {
		t.Fatalf("missing after batch = %v; want exactly the two bad ones", m)
	}
}

func TestBatchesOverTheLimit(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{MaxBatchTotalSizeBytes: 1000})
	ctx := context.Background()
	data := bytes.Repeat([]byte("x"), 600)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	req := &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: d.Proto(), Data: data}, {Digest: d.Proto(), Data: data},
	}}
	_, err := ts.cas.BatchUpdateBlobs(ctx, req)
	wantStatus(t, err, codes.InvalidArgument, "max_batch_total_size_bytes")
	if m := missing(t, ts.disk, d); !m[d] {
		t.Fatal("an over-limit batch stored a blob")
	}
	_, err = ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{d.Proto(), d.Proto()}})
	wantStatus(t, err, codes.InvalidArgument, "max_batch_total_size_bytes")
	// Two sizes that wrap the sum around to the blob's own size: the
	// stored blob, named again and again, must not all be read.
	putString(t, ts.disk, string(data))
	wrapped := []*repb.Digest{d.Proto(), d.Proto(), d.Proto(),
		{Hash: strings.Repeat("0", 64), SizeBytes: math.MaxInt64},
		{Hash: strings.Repeat("1", 64), SizeBytes: math.MaxInt64 - 2*600 + 2}}
	_, err = ts.cas.BatchReadBlobs(ctx, &repb.BatchReadBlobsRequest{Digests: wrapped})
	wantStatus(t, err, codes.InvalidArgument, "max_batch_total_size_bytes")

	// A message beyond the gRPC receive limit is refused by the transport,
	// and the server keeps serving.
	huge := bytes.Repeat([]byte("y"), 3<<20)
	hd := digest.FromBytes(repb.DigestFunction_SHA256, huge)
	_, err = ts.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: hd.Proto(), Data: huge}}})
	wantStatus(t, err, codes.ResourceExhausted)
	if _, err := ts.caps.GetCapabilities(ctx, &repb.GetCapabilitiesRequest{}); err != nil {
		t.Fatalf("server unusable after an oversized message: %v", err)
	}
}

// A compressed entry's digest and data are the client's word: neither a
// size of a terabyte nor a few kilobytes that inflate to hundreds of
// megabytes may make the server allocate them (a digest of 1 TiB once
// crashed it with "out of memory"). Both are refused, naming the entry,
// and the good entry beside them is stored.
func TestBatchUpdateBlobsCompressedBombs(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	good := bytes.Repeat([]byte("good "), 100)
	gd := digest.FromBytes(repb.DigestFunction_SHA256, good)
	small, _ := zstd.NewWriter(nil)
	// A stream of 256 MiB of zeros, with no content size in its header.
	var bomb bytes.Buffer
	zw, _ := zstd.NewWriter(&bomb, zstd.WithWindowSize(1<<20))
	zeros := make([]byte, 1<<20)
	for range 256 {
		if _, err := zw.Write(zeros); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	tiny := sha("tiny")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	resp, err := ts.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: &repb.Digest{Hash: tiny.Hash(), SizeBytes: 1 << 40}, Data: small.EncodeAll([]byte("tiny"), nil), Compressor: repb.Compressor_ZSTD},
		{Digest: tiny.Proto(), Data: bomb.Bytes(), Compressor: repb.Compressor_ZSTD},
		{Digest: gd.Proto(), Data: small.EncodeAll(good, nil), Compressor: repb.Compressor_ZSTD},
	}})
	runtime.ReadMemStats(&after)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		code      codes.Code
		fragments []string
	}{
		{codes.InvalidArgument, []string{"requests[0].digest", "max_batch_total_size_bytes"}},
		{codes.InvalidArgument, []string{"requests[1].data", "decompresses to more"}},
		{codes.OK, nil},
	} {
		wantStatus(t, status.ErrorProto(resp.Responses[i].Status), want.code, want.fragments...)
	}
	if m := missing(t, ts.disk, tiny, gd); !m[tiny] || m[gd] {
		t.Fatalf("missing after the batch = %v; want the good blob stored and nothing under the bombs' digest", m)
	}
	// Decoding stops past the digest's size.
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 48<<20 {
		t.Fatalf("the batch allocated %d MiB for %d KiB of request", grew>>20, bomb.Len()>>10)
	}
}

// A compressed entry may declare any window an upload may (64 MiB): zstd
// -19 and klauspost's streaming writer declare 8 MiB, and a 3,000-byte
// blob they compressed was refused, the window held to the batch's size
// (outside probe). A window past 64 MiB is refused, naming the bound.
func TestBatchUpdateBlobsCompressedWithLargeWindows(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	// A frame of one raw block whose header declares a window of 1<<log
	// bytes and no content size, as streaming writers make them.
	compress := func(data []byte, log int) []byte {
		frame := []byte{0x28, 0xb5, 0x2f, 0xfd, 0x00, byte(log-10) << 3}
		h := 1 | len(data)<<3 // the last block, raw
		frame = append(frame, byte(h), byte(h>>8), byte(h>>16))
		return append(frame, data...)
	}
	data := bytes.Repeat([]byte("a blob of 3000 bytes "), 150)[:3000]
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	resp, err := ts.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: d.Proto(), Data: compress(data, 23), Compressor: repb.Compressor_ZSTD}, // 8 MiB
		{Digest: d.Proto(), Data: compress(data, 27), Compressor: repb.Compressor_ZSTD}, // 128 MiB
	}})
	if err != nil {
		t.Fatal(err)
	}
	wantStatus(t, status.ErrorProto(resp.Responses[0].Status), codes.OK)
	wantStatus(t, status.ErrorProto(resp.Responses[1].Status), codes.InvalidArgument, "requests[1].data", "64 MiB")
	if m := missing(t, ts.disk, d); m[d] {
		t.Fatal("the blob of the 8 MiB window was not stored")
	}
}

func TestBatchReadBlobs(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	small := putString(t, ts.disk, "small")
	bigData := bytes.Repeat([]byte("compress me "), 1000)
	big := digest.FromBytes(repb.DigestFunction_SHA256, bigData)
	if err := ts.disk.Put(ctx, big, bytes.NewReader(bigData)); err != nil {
		t.Fatal(err)
	}
	absent := sha("absent")
	req := &repb.BatchReadBlobsRequest{Digests: []*repb.Digest{small.Proto(), big.Proto(), absent.Proto()}}

	resp, err := ts.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if string(resp.Responses[0].Data) != "small" || !bytes.Equal(resp.Responses[1].Data, bigData) {
		t.Fatal("identity read returned wrong data")
	}
	if resp.Responses[1].Compressor != repb.Compressor_IDENTITY {
		t.Fatal("compressed though the client did not accept zstd")
	}
	if codes.Code(resp.Responses[2].Status.Code) != codes.NotFound {
		t.Fatalf("absent blob status %v", resp.Responses[2].Status)
	}

	req.AcceptableCompressors = []repb.Compressor_Value{repb.Compressor_ZSTD}
	resp, err = ts.cas.BatchReadBlobs(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	r := resp.Responses[1]
	if r.Compressor != repb.Compressor_ZSTD || len(r.Data) >= len(bigData) {
		t.Fatalf("compressible blob not sent as zstd (compressor %v, %d bytes)", r.Compressor, len(r.Data))
	}
	dec, _ := zstd.NewReader(nil)
	if got, err := dec.DecodeAll(r.Data, nil); err != nil || !bytes.Equal(got, bigData) {
		t.Fatalf("zstd data does not decode to the blob: %v", err)
	}
}

func putProto(t *testing.T, s storage.BlobStore, m proto.Message) digest.Digest {
	t.Helper()
	b, _ := proto.Marshal(m)
	d := digest.FromBytes(repb.DigestFunction_SHA256, b)
	if err := s.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	return d
}

func recvTree(ctx context.Context, ts *testServer, req *repb.GetTreeRequest) ([]*repb.GetTreeResponse, error) {
	stream, err := ts.cas.GetTree(ctx, req)
	if err != nil {
		return nil, err
	}
	var out []*repb.GetTreeResponse
	for {
		r, err := stream.Recv()
		if err != nil {
			if err.Error() == "EOF" {
				return out, nil
			}
			return out, err
		}
		out = append(out, r)
	}
}

func TestGetTreePaging(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	// root -> a, b; a -> c; b -> c (shared, listed once); b -> gone (missing, omitted)
	c := putProto(t, ts.disk, &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: sha("f").Proto()}}})
	a := putProto(t, ts.disk, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "c", Digest: c.Proto()}}})
	gone := sha("not a directory that exists")
	b := putProto(t, ts.disk, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "c", Digest: c.Proto()}, {Name: "gone", Digest: gone.Proto()}}})
	root := putProto(t, ts.disk, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: a.Proto()}, {Name: "b", Digest: b.Proto()}}})

	all, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: root.Proto()})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 1 || len(all[0].Directories) != 4 || all[0].NextPageToken != "" {
		t.Fatalf("unpaged GetTree: %d responses, first with %d directories", len(all), len(all[0].Directories))
	}
	paged, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: root.Proto(), PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if len(paged) != 2 || len(paged[0].Directories) != 3 || len(paged[1].Directories) != 1 || paged[0].NextPageToken == "" || paged[1].NextPageToken != "" {
		t.Fatalf("paged GetTree: %v", paged)
	}
	// Resuming from the first page's token yields the rest.
	rest, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: root.Proto(), PageSize: 3, PageToken: paged[0].NextPageToken})
	if err != nil || len(rest) != 1 || !proto.Equal(rest[0].Directories[0], paged[1].Directories[0]) {
		t.Fatalf("resumed GetTree: %v, %v", rest, err)
	}
	_, err = recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: root.Proto(), PageToken: "garbage!"})
	wantStatus(t, err, codes.InvalidArgument, "page_token")
	_, err = recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: sha("no root").Proto()})
	wantStatus(t, err, codes.NotFound, "root_digest")
}

// TestBatchReadBlobsRepliesWithinTheAdvertisedLimit: a request inside
// max_batch_total_size_bytes gets its reply, however many blobs it names.
// Each entry of the reply repeats its digest and carries a status, so
// 31,000 blobs of 130 bytes (4,030,000 bytes, under the 4 MiB advertised)
// make a reply of about 6.5 MB, and 40,000 missing ones 40,000 NOT_FOUND
// statuses; both used to be refused by gRPC's send limit after every blob
// was read, with no per-blob status at all.
func TestBatchReadBlobsRepliesWithinTheAdvertisedLimit(t *testing.T) {
	cas := storage.NewMemoryBlobStore()
	ts := startServer(t, storage.ServerOptions{CAS: cas, MaxBatchTotalSizeBytes: 4 << 20})
	ctx := context.Background()
	present := &repb.BatchReadBlobsRequest{}
	for i := range 31000 {
		data := fmt.Sprintf("%0130d", i)
		present.Digests = append(present.Digests, putString(t, cas, data).Proto())
	}
	resp, err := ts.cas.BatchReadBlobs(ctx, present)
	if err != nil {
		t.Fatalf("31,000 blobs of 130 bytes: %v", err)
	}
	for i, r := range resp.Responses {
		if codes.Code(r.Status.GetCode()) != codes.OK || string(r.Data) != fmt.Sprintf("%0130d", i) {
			t.Fatalf("responses[%d]: status %v, %d bytes", i, r.Status, len(r.Data))
		}
	}
	absent := &repb.BatchReadBlobsRequest{}
	for i := range 40000 {
		absent.Digests = append(absent.Digests, &repb.Digest{Hash: sha(fmt.Sprint("absent", i)).Hash(), SizeBytes: 50})
	}
	resp, err = ts.cas.BatchReadBlobs(ctx, absent)
	if err != nil {
		t.Fatalf("40,000 missing blobs: %v", err)
	}
	if len(resp.Responses) != 40000 {
		t.Fatalf("%d responses for 40,000 digests", len(resp.Responses))
	}
	for i, r := range resp.Responses {
		if codes.Code(r.Status.GetCode()) != codes.NotFound || r.Status.Message == "" {
			t.Fatalf("responses[%d]: status %v", i, r.Status)
		}
	}
}
