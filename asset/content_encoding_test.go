package asset_test

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/digest"
)

func gzipped(t *testing.T, data []byte) []byte {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestFetchBlobContentEncoding: servers send Content-Encoding: gzip,
// unasked, with a .tar.gz as published, whose checksum is of those bytes;
// as in Bazel's own downloader, a gzip Content-Encoding is undone only
// when neither the URL asked for nor the one answering after redirects
// ends in gz or tgz. Undone, the content is still bounded by
// max_fetch_bytes (a gzip bomb), and so is the compressed stream (one
// inflating to nothing never ends on its own).
func TestFetchBlobContentEncoding(t *testing.T) {
	const limit = 1 << 20
	plain := bytes.Repeat([]byte("a line of the file as published\n"), 100)
	archive := gzipped(t, plain) // a .tar.gz, say
	emptyMember := gzipped(t, nil)
	gzipAnswer := func(body []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = w.Write(body) // the client may be gone
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/archive.tar.gz", gzipAnswer(archive))
	mux.Handle("/archive.TGZ", gzipAnswer(archive))
	mux.Handle("/download", gzipAnswer(archive))
	mux.HandleFunc("/latest.tgz", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/download", http.StatusFound) })
	mux.Handle("/notes.txt", gzipAnswer(archive))
	mux.Handle("/bomb", gzipAnswer(gzipped(t, make([]byte, 8*limit))))
	mux.Handle("/nothing-forever", gzipAnswer(bytes.Repeat(emptyMember, 2*limit/len(emptyMember))))
	o := httptest.NewServer(mux)
	t.Cleanup(o.Close)
	h := start(t, func(opts *asset.Options) {
		opts.AllowedHosts = []string{strings.TrimPrefix(o.URL, "http://")}
		opts.MaxFetchBytes = limit
	})
	for _, tc := range []struct {
		path string
		want []byte // the content stored; nil: the fetch fails
		code codes.Code
	}{
		{"/archive.tar.gz", archive, codes.OK},
		{"/archive.TGZ", archive, codes.OK},
		{"/latest.tgz", archive, codes.OK}, // redirected to /download
		{"/notes.txt", plain, codes.OK},
		{"/bomb", nil, codes.ResourceExhausted},
		{"/nothing-forever", nil, codes.ResourceExhausted},
	} {
		t.Run(strings.TrimPrefix(tc.path, "/"), func(t *testing.T) {
			sum := plain
			if tc.want != nil {
				sum = tc.want
			}
			resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{Uris: []string{o.URL + tc.path}, Qualifiers: q("checksum.sri", sri(sum))})
			if err != nil {
				t.Fatal(err)
			}
			if st := status.FromProto(resp.Status); st.Code() != tc.code {
				t.Fatalf("status %v; want %s", st, tc.code)
			}
			if tc.want != nil && resp.BlobDigest.GetHash() != digest.FromBytes(repb.DigestFunction_SHA256, tc.want).Hash() {
				t.Fatalf("stored %v; want the %d bytes of the content as published", resp.BlobDigest, len(tc.want))
			}
		})
	}
}
