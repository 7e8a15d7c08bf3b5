package asset_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// shattered are the first 320 bytes of the two PDFs of the public
// SHAttered SHA-1 collision (2017): different bytes, one SHA-1.
var shattered = [2]string{
	"255044462d312e330a25e2e3cfd30a0a0a312030206f626a0a3c3c2f57696474682032203020522f4865696768742033203020522f547970652034203020522f537562747970652035203020522f46696c7465722036203020522f436f6c6f7253706163652037203020522f4c656e6774682038203020522f42697473506572436f6d706f6e656e7420383e3e0a73747265616d0affd8fffe00245348412d3120697320646561642121212121852fec092339759c39b1a1c63c4c97e1fffe017f46dc93a6b67e013b029aaa1db2560b45ca67d688c7f84b8c4c791fe02b3df614f86db1690901c56b45c1530afedfb76038e972722fe7ad728f0e4904e046c230570fe9d41398abe12ef5bc942be33542a4802d98b5d70f2a332ec37fac3514e74ddc0f2cc1a874cd0c78305a21566461309789606bd0bf3f98cda8044629a1",
	"255044462d312e330a25e2e3cfd30a0a0a312030206f626a0a3c3c2f57696474682032203020522f4865696768742033203020522f547970652034203020522f537562747970652035203020522f46696c7465722036203020522f436f6c6f7253706163652037203020522f4c656e6774682038203020522f42697473506572436f6d706f6e656e7420383e3e0a73747265616d0affd8fffe00245348412d3120697320646561642121212121852fec092339759c39b1a1c63c4c97e1fffe017346dc9166b67e118f029ab621b2560ff9ca67cca8c7f85ba84c79030c2b3de218f86db3a90901d5df45c14f26fedfb3dc38e96ac22fe7bd728f0e45bce046d23c570feb141398bb552ef5a0a82be331fea48037b8b5d71f0e332edf93ac3500eb4ddc0decc1a864790c782c76215660dd309791d06bd0af3f98cda4bc4629b1",
}

// TestFetchUnderSHA1ServesWhatItVerified: a FetchBlob under SHA-1 whose
// download matches its sha256 checksum, while the CAS already holds
// another blob with the same SHA-1, is refused: the CAS keeps what it
// has, and the fetch answered OK with that other blob, recorded for
// every later fetch under the request's checksum. Fetched under SHA-256
// the same content is served as verified.
func TestFetchUnderSHA1ServesWhatItVerified(t *testing.T) {
	var blobs [2][]byte
	for i, s := range shattered {
		var err error
		if blobs[i], err = hex.DecodeString(s); err != nil {
			t.Fatal(err)
		}
	}
	d := digest.FromBytes(repb.DigestFunction_SHA1, blobs[0])
	if bytes.Equal(blobs[0], blobs[1]) || digest.FromBytes(repb.DigestFunction_SHA1, blobs[1]) != d {
		t.Fatal("the test's blobs are not a SHA-1 collision")
	}
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := cas.Put(t.Context(), d, bytes.NewReader(blobs[0])); err != nil {
		t.Fatal(err)
	}
	o := startOrigin(t, blobs[1])
	h := start(t, func(opts *asset.Options) {
		opts.CAS = cas
		opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")}
	})
	req := &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri(blobs[1])), DigestFunction: repb.DigestFunction_SHA1}
	resp, err := h.fetch.FetchBlob(readsStatus(t), req)
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "SHA-1 collision") {
		t.Fatalf("fetch under SHA-1 of a colliding blob: %v, %v; want FAILED_PRECONDITION naming the collision", resp, err)
	}
	req.DigestFunction = repb.DigestFunction_SHA256
	resp, err = h.fetch.FetchBlob(readsStatus(t), req)
	if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetHash() != digest.FromBytes(repb.DigestFunction_SHA256, blobs[1]).Hash() {
		t.Fatalf("the same fetch under SHA-256: %v, %v", resp, err)
	}
}

// swappedCAS serves other in place of blob d once swapped is set: d
// evicted, and a colliding blob uploaded under it.
type swappedCAS struct {
	storage.BlobStore
	d       digest.Digest
	other   []byte
	swapped atomic.Bool
}

func (c *swappedCAS) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	if c.swapped.Load() && d == c.d {
		return io.NopCloser(bytes.NewReader(c.other[offset:])), nil
	}
	return c.BlobStore.Get(ctx, d, offset)
}

// TestFetchRecordUnderSHA1IsCheckedAgain: a record made by a verified
// fetch under SHA-1 is served only while the blob under its digest still
// matches the checksum: evicted, the blob can come back as another with
// the same SHA-1, which the record would have handed out.
func TestFetchRecordUnderSHA1IsCheckedAgain(t *testing.T) {
	var blobs [2][]byte
	for i, s := range shattered {
		blobs[i], _ = hex.DecodeString(s)
	}
	cas := &swappedCAS{BlobStore: storage.NewMemoryBlobStore(), d: digest.FromBytes(repb.DigestFunction_SHA1, blobs[1]), other: blobs[0]}
	o := startOrigin(t, blobs[1])
	h := start(t, func(opts *asset.Options) {
		opts.CAS = cas
		opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")}
	})
	req := &rapb.FetchBlobRequest{Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri(blobs[1])), DigestFunction: repb.DigestFunction_SHA1}
	if resp, err := h.fetch.FetchBlob(readsStatus(t), req); err != nil || resp.Status.GetCode() != 0 {
		t.Fatalf("first fetch: %v, %v", resp, err)
	}
	if resp, err := h.fetch.FetchBlob(readsStatus(t), req); err != nil || resp.Status.GetCode() != 0 || o.hits.Load() != 1 {
		t.Fatalf("second fetch: %v, %v after %d downloads; want the record", resp, err, o.hits.Load())
	}
	cas.swapped.Store(true)
	resp, err := h.fetch.FetchBlob(readsStatus(t), req)
	if st := status.Convert(err); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), "SHA-1 collision") {
		t.Fatalf("fetch once the blob was swapped: %v, %v; want FAILED_PRECONDITION naming the collision", resp, err)
	}
}
