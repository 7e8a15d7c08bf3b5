package images

import (
	"fmt"
	"net/http"
)

// httpGuard refuses plain-HTTP requests to registries not configured as
// insecure. go-containerregistry itself falls back to HTTP for loopback and
// RFC 1918 addresses; on a build farm that would let anyone on the network
// path substitute image content, so the decision is the operator's.
type httpGuard struct {
	next     http.RoundTripper
	insecure map[string]bool
}

func (g *httpGuard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.insecure[req.URL.Host] {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("plain HTTP to %s refused: not a configured insecure registry", req.URL.Host)
	}
	return g.next.RoundTrip(req)
}
