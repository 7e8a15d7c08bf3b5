package images

import (
	"errors"
	"fmt"
	"net/http"
)

// ErrPlainHTTPRefused is the error of a plain-HTTP request to a registry
// not configured as insecure.
var ErrPlainHTTPRefused = errors.New("not a configured insecure registry")

// httpGuard refuses plain-HTTP requests to registries not configured as
// insecure. go-containerregistry itself falls back to HTTP for loopback and
// RFC 1918 addresses; on a build farm that would let anyone on the network
// path substitute image content, so the decision is the operator's.
// It also asks for every response unencoded (see RoundTrip), whatever the
// transport.
type httpGuard struct {
	next     http.RoundTripper
	insecure map[string]bool
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure[req.URL.Host] {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("plain HTTP to %s refused: %w", req.URL.Host, ErrPlainHTTPRefused)
	}
	if req.Header.Get("Accept-Encoding") == "" {
		// Asking for the identity encoding stops net/http from asking for
		// gzip and decompressing transparently: blobs are already
		// compressed, and a body decompressed on the fly is bounded by no
		// Content-Length (a 1 MB gzip-encoded config grew to gigabytes).
		// A gzip-encoded answer anyway stays compressed, and fails its
		// digest.
		req = req.Clone(req.Context())
		req.Header.Set("Accept-Encoding", "identity")
	}
	return g.next.RoundTrip(req)
}
