package asset

import (
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// The server's transport neither asks for compression nor undoes it
// (http.Transport.DisableCompression). Go's default gunzips every answer
// with Content-Encoding: gzip, and servers send that header, unasked,
// with a .tar.gz as published, whose checksum is of the compressed bytes:
// such fetches failed ABORTED, checksum mismatch. contentReader does what
// Bazel's own downloader does (HttpStream): a gzip Content-Encoding is
// undone unless the URL asked for, or the one that answered after
// redirects, has the extension gz or tgz.

// gzippedExtensions are those extensions, as Bazel lists them.
var gzippedExtensions = map[string]bool{"gz": true, "tgz": true}

// errEncodedTooLarge is the compressed stream passing its bound.
var errEncodedTooLarge = errors.New("compressed stream larger than the limit")

// contentReader returns the content of resp, fetched for asked: its body,
// or the body gunzipped as above. Either way the caller bounds what it
// reads; gunzipped, the bytes read from the network are bounded by limit
// too (past it, reads fail with errEncodedTooLarge), so that a stream
// inflating to nothing, such as endless empty gzip members, cannot run
// until the timeout. A gzip header that does not parse is an error.
func contentReader(resp *http.Response, asked *url.URL, limit int64) (io.Reader, error) {
	enc := strings.TrimSpace(resp.Header.Get("Content-Encoding"))
	if !strings.EqualFold(enc, "gzip") && !strings.EqualFold(enc, "x-gzip") {
		return resp.Body, nil
	}
	if gzippedExtensions[extension(asked.Path)] || resp.Request != nil && gzippedExtensions[extension(resp.Request.URL.Path)] {
		return resp.Body, nil
	}
	return gzip.NewReader(&boundedReader{r: resp.Body, left: limit})
}

// extension is what follows the last "." of a URL path, in lower case
// (Bazel's HttpUtils.getExtension).
func extension(path string) string {
	i := strings.LastIndexByte(path, '.')
	if i < 0 {
		return ""
	}
	return strings.ToLower(path[i+1:])
}

// boundedReader reads at most left bytes of r, then fails with
// errEncodedTooLarge if r has more.
type boundedReader struct {
	r    io.Reader
	left int64
}

func (b *boundedReader) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.r.Read(one[:])
		if n > 0 {
			return 0, errEncodedTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	return n, err
}
