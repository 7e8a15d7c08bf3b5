package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ErrPlainHTTPRefused is the error of a plain-HTTP request to a registry
// not configured as insecure.
var ErrPlainHTTPRefused = errors.New("not a configured insecure registry")

// ErrTooManyRedirects is the error of a request redirected more than
// maxRedirects times.
var ErrTooManyRedirects = fmt.Errorf("redirected more than %d times", maxRedirects)

// maxRedirects is how many redirects one request may follow: net/http's
// own limit, which go-containerregistry's CheckRedirect (v0.22.1,
// checkRedirectSSRF) replaces with none, so a registry that redirected to
// itself got 241,461 requests in 120 s from one pull.
const maxRedirects = 10

// redirectsBefore counts the redirects that led to req: net/http sets a
// redirected request's Response to the response that redirected it.
func redirectsBefore(req *http.Request) int {
	n := 0
	for r := req.Response; r != nil && n <= maxRedirects; n++ {
		if r.Request == nil {
			return n + 1
		}
		r = r.Request.Response
	}
	return n
}

// httpGuard refuses plain-HTTP requests to registries not configured as
// insecure. go-containerregistry itself falls back to HTTP for loopback and
// RFC 1918 addresses; on a build farm that would let anyone on the network
// path substitute image content, so the decision is the operator's.
// It also asks for every response unencoded (see RoundTrip), whatever the
// transport, ends a request that receives nothing for idle (idleTimer),
// bounds what a manifest's body may be (maxManifestBytes), and refuses a
// request past maxRedirects redirects.
type httpGuard struct {
	next     http.RoundTripper
	insecure map[string]bool
	idle     time.Duration // Options.ReadIdleTimeout
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure[req.URL.Host] {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("plain HTTP to %s refused: %w", req.URL.Host, ErrPlainHTTPRefused)
	}
	if n := redirectsBefore(req); n > maxRedirects {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("request to %s refused: %w", req.URL.Host, ErrTooManyRedirects)
	}
	ctx, cancel := context.WithCancel(req.Context())
	req = req.Clone(ctx)
	if req.Header.Get("Accept-Encoding") == "" {
		// Asking for the identity encoding stops net/http from asking for
		// gzip and decompressing transparently: blobs are already
		// compressed, and a body decompressed on the fly is bounded by no
		// Content-Length (a 1 MB gzip-encoded config grew to gigabytes).
		// A gzip-encoded answer anyway stays compressed, and fails its
		// digest.
		req.Header.Set("Accept-Encoding", "identity")
	}
	idle := startIdleTimer(g.idle, cancel)
	resp, err := g.next.RoundTrip(req)
	if err != nil {
		idle.stop()
		cancel()
		return nil, idle.explain(err)
	}
	body := resp.Body
	if isManifestRequest(req) {
		body = &manifestBody{ReadCloser: body, declared: resp.ContentLength}
	}
	resp.Body = &idleBody{ReadCloser: body, idle: idle, cancel: cancel}
	return resp, nil
}

// isManifestRequest reports whether req asks for a manifest or an index:
// go-containerregistry sends an Accept header with those requests only
// (blob and token requests have none), and a redirect keeps it.
func isManifestRequest(req *http.Request) bool {
	return req.Method == http.MethodGet && req.Header.Get("Accept") != ""
}

// manifestBody refuses a manifest's body past maxManifestBytes, before
// go-containerregistry reads (up to 100 MiB) and parses it: a 90 MB
// manifest of 550,000 layers took the runner to 770 MB before the image
// was refused for its layer count.
type manifestBody struct {
	io.ReadCloser
	declared int64 // Content-Length, or -1
	n        int64
}

func (b *manifestBody) Read(p []byte) (int, error) {
	if b.declared > maxManifestBytes {
		return 0, fmt.Errorf("manifest of %d bytes refused: %w", b.declared, errManifestTooLarge)
	}
	n, err := b.ReadCloser.Read(p)
	if b.n += int64(n); b.n > maxManifestBytes {
		return 0, fmt.Errorf("manifest refused: %w", errManifestTooLarge)
	}
	return n, err
}
