package asset_test

import (
	"fmt"
	"strings"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/asset"
)

// What one request may make the server write is bounded: the records of
// every tenant share one bound (max_record_bytes), and a Push writes a
// record per URI that holds the request's qualifiers and references in
// full.

// boundHarness serves the asset services over h's CAS with its records in
// dir, which the test reads, downloading from the hosts allowed.
func boundHarness(t *testing.T, allowed ...string) (*harness, string) {
	t.Helper()
	h := start(t, nil)
	dir := t.TempDir()
	h.fetch, h.push = serve(t, asset.Options{CAS: h.cas, Dir: dir, Now: h.clock.Now, AllowedHosts: allowed})
	return h, dir
}

// uriList is n distinct URIs.
func uriList(n int) []string {
	uris := make([]string, n)
	for i := range uris {
		uris[i] = fmt.Sprintf("https://mirror%d.example/a.tar.gz", i)
	}
	return uris
}

// padTo lengthens the last qualifier's value so that the names and values
// of qs come to n bytes.
func padTo(qs []*rapb.Qualifier, n int) []*rapb.Qualifier {
	total := 0
	for _, q := range qs {
		total += len(q.Name) + len(q.Value)
	}
	qs[len(qs)-1].Value += strings.Repeat("a", n-total)
	return qs
}

// TestQualifiersAreBounded: one PushBlob of 100 URIs with a qualifier of
// 1 MiB wrote 101 MB of records, as each record holds the qualifiers, and
// six of them evicted another tenant's record. Every call refuses it,
// naming the qualifier, before anything is written. The most a request
// may carry (256 qualifiers, 64 KiB of names and values) is pushed and
// found, and downloaded with.
func TestQualifiersAreBounded(t *testing.T) {
	content := []byte("qualified content\n")
	o := startOrigin(t, content)
	h, dir := boundHarness(t, strings.TrimPrefix(o.URL, "http://"))
	ctx := readsStatus(t)
	blob := h.put(t, content)
	tree := h.putProto(t, &repb.Directory{})
	uris := uriList(100)
	huge := q("checksum.sri", sri(content), "bazel.canonical_id", strings.Repeat("a", 1<<20))
	for name, call := range map[string]func() error{
		"PushBlob": func() error {
			_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: uris, Qualifiers: huge, BlobDigest: blob.Proto()})
			return err
		},
		"PushDirectory": func() error {
			_, err := h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: uris, Qualifiers: huge, RootDirectoryDigest: tree.Proto()})
			return err
		},
		"FetchBlob": func() error {
			_, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: append(uris[:99:99], o.URL+"/file"), Qualifiers: huge})
			return err
		},
		"FetchDirectory": func() error {
			_, err := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: uris, Qualifiers: huge})
			return err
		},
	} {
		wantCode(t, call(), codes.InvalidArgument, fmt.Sprintf("qualifiers[1].value: %d bytes", 1<<20))
		if n := countRecords(t, dir); n != 0 || o.hits.Load() != 0 {
			t.Fatalf("%s with a 1 MiB qualifier: %d records written, %d downloads; want none", name, n, o.hits.Load())
		}
	}

	// The most qualifiers, and bytes, Bazel could send: a credential
	// header per URL besides the checksum and canonical ID.
	most := q("checksum.sri", sri(content))
	for i := range 253 {
		most = append(most, q(fmt.Sprintf("http_header_url:%d:Authorization", i), "Bearer "+strings.Repeat("t", 40))...)
	}
	most = padTo(append(most, q("http_header:Accept", "*/*", "bazel.canonical_id", "")...), 64<<10)
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:most"}, Qualifiers: most, BlobDigest: blob.Proto()}); err != nil {
		t.Fatalf("a push with %d qualifiers of 64 KiB in all: %v", len(most), err)
	}
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:most"}, Qualifiers: most})
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != blob.Hash() {
		t.Fatalf("fetch of the push with the most qualifiers: %v, %v", resp, err)
	}
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:more"}, Qualifiers: append(most, q("x", "")...), BlobDigest: blob.Proto()})
	wantCode(t, err, codes.InvalidArgument, "qualifiers: 257 qualifiers, more than the 256")

	download := padTo(q("checksum.sri", sri(content), "bazel.canonical_id", ""), 64<<10)
	resp, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: download})
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != blob.Hash() || o.hits.Load() != 1 {
		t.Fatalf("a download with 64 KiB of qualifiers: %v, %v, %d downloads", resp, err, o.hits.Load())
	}
	before := countRecords(t, dir)
	download = padTo(q("checksum.sri", sri(content), "bazel.canonical_id", ""), 64<<10+1)
	_, err = h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: download})
	wantCode(t, err, codes.InvalidArgument, "qualifiers[1].value")
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:over"}, Qualifiers: download, BlobDigest: blob.Proto()})
	wantCode(t, err, codes.InvalidArgument, "more than the 65536")
	if n := countRecords(t, dir); n != before || o.hits.Load() != 1 {
		t.Errorf("requests over 64 KiB of qualifiers: %d records written, %d more downloads; want none", n-before, o.hits.Load()-1)
	}
}

// TestPushRecordsAreBoundedPerRequest: within the bounds on URIs and
// qualifiers a PushBlob still wrote each record once per URI, so what it
// writes is bounded too: records of at most 1 MiB in all, each counted
// with the 4 KiB block its file takes. The largest push within it is
// recorded; a byte more is refused whole, as is one whose qualifiers grow
// past it as JSON escapes them.
func TestPushRecordsAreBoundedPerRequest(t *testing.T) {
	h, dir := boundHarness(t)
	ctx := readsStatus(t)
	blob := h.put(t, []byte("recorded 100 times"))
	// A record with an empty qualifier value: every byte of the value
	// adds one to it.
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:probe"}, Qualifiers: q("bazel.canonical_id", ""), BlobDigest: blob.Proto()}); err != nil {
		t.Fatal(err)
	}
	base := recordSizes(t, dir)[0]
	room := int((1<<20)/100 - 4096 - base) // the value that fills 1 MiB with 100 records
	uris := uriList(100)

	_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: uris, Qualifiers: q("bazel.canonical_id", strings.Repeat("a", room+1)), BlobDigest: blob.Proto()})
	wantCode(t, err, codes.InvalidArgument, "more than the 1048576 one request may write")
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: uris, Qualifiers: q("bazel.canonical_id", strings.Repeat("<", room/6+1)), BlobDigest: blob.Proto()})
	wantCode(t, err, codes.InvalidArgument, "more than the 1048576 one request may write")
	if n := countRecords(t, dir); n != 1 {
		t.Fatalf("refused pushes wrote %d records", n-1)
	}

	most := q("bazel.canonical_id", strings.Repeat("a", room))
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: uris, Qualifiers: most, BlobDigest: blob.Proto()}); err != nil {
		t.Fatalf("a push of 100 records of %d bytes: %v", (1<<20)/100, err)
	}
	var written int64
	for _, size := range recordSizes(t, dir) {
		written += size + 4096
	}
	if written -= base + 4096; written > 1<<20 {
		t.Errorf("the push wrote records of %d bytes, more than 1 MiB", written)
	}
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: uris[99:], Qualifiers: most})
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != blob.Hash() {
		t.Fatalf("fetch of the largest push: %v, %v", resp, err)
	}
}

// TestPushReferencesAreBounded: every record of a push holds its
// references too, and every Fetch that finds it checks each one, so a
// push references at most 1,000 blobs and 1,000 directories, and the
// records they make are bounded as qualifiers' are. BuildStream, which
// references about a dozen, pushes under two URIs: that many references
// under as many URIs are recorded.
func TestPushReferencesAreBounded(t *testing.T) {
	h, dir := boundHarness(t)
	ctx := readsStatus(t)
	blob := h.put(t, []byte("artifact proto"))
	tree := h.putProto(t, &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: blob.Proto()}}})
	refs := func(n int, d *repb.Digest) []*repb.Digest {
		out := make([]*repb.Digest, n)
		for i := range out {
			out[i] = d
		}
		return out
	}
	_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:a"}, BlobDigest: blob.Proto(), ReferencesBlobs: refs(1001, blob.Proto())})
	wantCode(t, err, codes.InvalidArgument, "references_blobs: 1001 digests, more than the 1000")
	_, err = h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{"urn:a"}, RootDirectoryDigest: tree.Proto(), ReferencesDirectories: refs(1001, tree.Proto())})
	wantCode(t, err, codes.InvalidArgument, "references_directories: 1001 digests, more than the 1000")
	_, err = h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: uriList(100), BlobDigest: blob.Proto(),
		ReferencesBlobs: refs(1000, blob.Proto()), ReferencesDirectories: refs(1000, tree.Proto())})
	wantCode(t, err, codes.InvalidArgument, "more than the 1048576 one request may write")
	if n := countRecords(t, dir); n != 0 {
		t.Fatalf("refused pushes wrote %d records", n)
	}

	uris := []string{"urn:fdc:buildstream.build:2020:v1:strong", "urn:fdc:buildstream.build:2020:v1:weak"}
	for _, push := range []func() error{
		func() error {
			_, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: uris, BlobDigest: blob.Proto(),
				ReferencesBlobs: refs(1000, blob.Proto()), ReferencesDirectories: refs(1000, tree.Proto())})
			return err
		},
		func() error {
			_, err := h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: uris, RootDirectoryDigest: tree.Proto(),
				ReferencesBlobs: refs(1000, blob.Proto()), ReferencesDirectories: refs(1000, tree.Proto())})
			return err
		},
	} {
		if err := push(); err != nil {
			t.Fatalf("a push of 1,000 references of each kind under two URIs: %v", err)
		}
	}
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: uris[1:]})
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != blob.Hash() {
		t.Fatalf("fetch of the blob with the most references: %v, %v", resp, err)
	}
	dresp, err := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: uris[1:]})
	if err != nil || dresp.Status.GetCode() != 0 || dresp.RootDirectoryDigest.GetHash() != tree.Hash() {
		t.Fatalf("fetch of the directory with the most references: %v, %v", dresp, err)
	}
}
