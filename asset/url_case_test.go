package asset_test

import (
	"strings"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"

	"github.com/paddock-build/paddock/asset"
)

// TestSchemesAndHostNamesAreCaseInsensitive: RFC 3986 makes URL schemes
// and host names case-insensitive, so "HTTP://" is an http URL, and an
// allow-list entry matches a host name whatever the case of either.
func TestSchemesAndHostNamesAreCaseInsensitive(t *testing.T) {
	content := []byte("any case\n")
	o := startOrigin(t, content)
	port := o.URL[strings.LastIndexByte(o.URL, ':'):]
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{"127.0.0.1" + port, "LOCALHOST" + port} })
	for _, uri := range []string{"HTTP://127.0.0.1" + port + "/file", "Http://localhost" + port + "/file", "http://LocalHost" + port + "/file"} {
		resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{Uris: []string{uri}, Qualifiers: q("checksum.sri", sri(content))})
		if err != nil || resp.Status.GetCode() != 0 || resp.BlobDigest.GetSizeBytes() != int64(len(content)) {
			t.Errorf("fetch of %s: %v, %v", uri, resp, err)
		}
	}
	if n := o.hits.Load(); n != 3 {
		t.Errorf("%d downloads, want 3", n)
	}
}
