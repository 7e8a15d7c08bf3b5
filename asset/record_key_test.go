package asset_test

import (
	"bytes"
	"strings"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/digest"
)

// TestQualifierNamesCannotForgeAChecksum: a pusher (ac-write) pushes
// other bytes under a qualifier named "checksum.sri=sha256-…" (the SRI
// of the victim's file without its trailing "=") with an empty value,
// which the push does not check, as it is not checksum.sri. When the
// record key joined name and value with "=", that record answered the
// victim's FetchBlob with checksum.sri=sha256-…= with the pusher's bytes.
// The victim's fetch must miss it and download the file itself.
func TestQualifierNamesCannotForgeAChecksum(t *testing.T) {
	hello, evil := []byte("hello\n"), []byte("EVIL")
	o := startOrigin(t, hello)
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")} })
	ctx := readsStatus(t)
	evilDigest := h.put(t, evil)
	sum := sri(hello)
	if !strings.HasSuffix(sum, "=") {
		t.Fatalf("the attack needs an SRI ending in padding, got %s", sum)
	}
	uri := o.URL + "/file"
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{uri},
		Qualifiers: q("checksum.sri="+strings.TrimSuffix(sum, "="), ""), BlobDigest: evilDigest.Proto()}); err != nil {
		t.Fatal(err)
	}
	resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: q("checksum.sri", sum)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetBlobDigest().GetHash() == evilDigest.Hash() {
		t.Fatalf("the victim's checksummed fetch got the pushed bytes %q: %v", evil, resp)
	}
	want := digest.FromBytes(repb.DigestFunction_SHA256, hello)
	if resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != want.Hash() || o.hits.Load() != 1 {
		t.Fatalf("fetch: %v, %d downloads; want %s downloaded once", resp, o.hits.Load(), want)
	}
}

// TestRecordsAnswerOnlyTheirDigestFunction: a Fetch names the digest
// function the server must answer with (unset: SHA-256), so a record made
// under one function does not answer a fetch under another, blob or
// directory. A push leaving the function unset is recorded under the one
// its hash length names, and found by fetches naming that one.
func TestRecordsAnswerOnlyTheirDigestFunction(t *testing.T) {
	content := []byte("fetched under two digest functions\n")
	o := startOrigin(t, content)
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")} })
	ctx := readsStatus(t)
	const sha256, sha512, unset = repb.DigestFunction_SHA256, repb.DigestFunction_SHA512, repb.DigestFunction_UNKNOWN
	for i, tc := range []struct {
		asked, want digest.Function
		downloads   int64
	}{{sha512, sha512, 1}, {unset, sha256, 2}, {sha256, sha256, 2}, {sha512, sha512, 2}} {
		resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"},
			Qualifiers: q("checksum.sri", sri(content)), DigestFunction: tc.asked})
		want := digest.FromBytes(tc.want, content)
		if err != nil || resp.Status.GetCode() != 0 || resp.DigestFunction != tc.want || resp.BlobDigest.GetHash() != want.Hash() {
			t.Fatalf("fetch %d under %s: %v, %v; want %s under %s", i, tc.asked, resp, err, want, tc.want)
		}
		if n := o.hits.Load(); n != tc.downloads {
			t.Fatalf("fetch %d under %s: %d downloads, want %d", i, tc.asked, n, tc.downloads)
		}
	}

	// A blob pushed without a function: SHA-512 from its hash's length.
	blob := digest.FromBytes(sha512, []byte("pushed"))
	if err := h.cas.Put(ctx, blob, bytes.NewReader([]byte("pushed"))); err != nil {
		t.Fatal(err)
	}
	if _, err := h.push.PushBlob(ctx, &rapb.PushBlobRequest{Uris: []string{"urn:blob"}, BlobDigest: blob.Proto()}); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []digest.Function{sha512, unset, sha256} {
		resp, err := h.fetch.FetchBlob(ctx, &rapb.FetchBlobRequest{Uris: []string{"urn:blob"}, DigestFunction: fn})
		found := err == nil && resp.Status.GetCode() == 0
		if found != (fn == sha512) || found && (resp.DigestFunction != sha512 || resp.BlobDigest.GetHash() != blob.Hash()) {
			t.Errorf("FetchBlob of the SHA-512 blob under %s: %v, %v", fn, resp, err)
		}
	}

	// Directories: one of each function, pushed without a function.
	dirs := map[digest.Function]digest.Digest{}
	for _, fn := range []digest.Function{sha256, sha512} {
		file := digest.FromBytes(fn, []byte("file"))
		b, _ := proto.Marshal(&repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: file.Proto()}}})
		dirs[fn] = digest.FromBytes(fn, b)
		for d, data := range map[digest.Digest][]byte{file: []byte("file"), dirs[fn]: b} {
			if err := h.cas.Put(ctx, d, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := h.push.PushDirectory(ctx, &rapb.PushDirectoryRequest{Uris: []string{"urn:tree-" + fn.String()}, RootDirectoryDigest: dirs[fn].Proto()}); err != nil {
			t.Fatal(err)
		}
	}
	for _, recorded := range []digest.Function{sha256, sha512} {
		for _, asked := range []digest.Function{sha256, sha512, unset} {
			resp, err := h.fetch.FetchDirectory(ctx, &rapb.FetchDirectoryRequest{Uris: []string{"urn:tree-" + recorded.String()}, DigestFunction: asked})
			if err != nil {
				t.Fatal(err)
			}
			effective := asked
			if asked == unset {
				effective = sha256
			}
			if effective == recorded {
				if resp.Status.GetCode() != 0 || resp.DigestFunction != recorded || resp.RootDirectoryDigest.GetHash() != dirs[recorded].Hash() {
					t.Errorf("FetchDirectory of the %s tree under %s: %v", recorded, asked, resp)
				}
			} else if codes.Code(resp.Status.GetCode()) != codes.NotFound {
				t.Errorf("FetchDirectory of the %s tree under %s: %v; want NOT_FOUND", recorded, asked, resp)
			}
		}
	}
}
