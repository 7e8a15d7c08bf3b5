package images

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// A registry that redirects a request to itself gets at most
// maxRedirects more of it, and the pull fails saying so:
// go-containerregistry follows redirects without limit, and one such
// registry got 241,461 requests in 120 s from one pull.
func TestRedirectChainsAreBounded(t *testing.T) {
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v2/" {
			return // the ping: a registry without auth
		}
		if requests.Add(1) > 100 { // an unbounded chain: end it here
			http.NotFound(w, req)
			return
		}
		http.Redirect(w, req, req.URL.Path+"?again", http.StatusFound)
	}))
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	c := newTestCache(t, t.TempDir(), nil, func(o *Options) { o.Insecure = []string{host} })
	ref, _, err := ParseReference("docker://" + host + "/loop:1")
	if err != nil {
		t.Fatal(err)
	}
	rf, err := c.Rootfs(context.Background(), ref)
	if err == nil {
		rf.Release()
		t.Fatal("pulled from a registry that only redirects")
	}
	if !errors.Is(err, ErrTooManyRedirects) {
		t.Errorf("error %v, want ErrTooManyRedirects", err)
	}
	// One chain: the first request and maxRedirects redirects of it
	// (the pull is not retried for this error).
	if n := requests.Load(); n != maxRedirects+1 {
		t.Errorf("%d requests to the redirecting registry, want %d", n, maxRedirects+1)
	}
}
