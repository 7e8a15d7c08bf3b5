package asset

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// maxRedirects bounds a download's redirect chain.
const maxRedirects = 10

// downloader fetches http(s) URLs for FetchBlob: only from allowed hosts
// (redirects included), within the caller's deadline and a size limit,
// into a temporary file while hashing for the CAS and for the client's
// checksum. Its errors are statuses whose codes are those
// FetchBlobResponse.status documents for failures outside the server's
// control; their messages never quote what the origin sent
// (originError).
type downloader struct {
	allowed  map[string]bool // "host" or "host:port", in lower case
	client   *http.Client
	maxBytes int64
	tmpDir   string
}

func newDownloader(allowed []string, maxBytes int64, tmpDir string) *downloader {
	d := &downloader{allowed: map[string]bool{}, maxBytes: maxBytes, tmpDir: tmpDir}
	for _, h := range allowed {
		d.allowed[strings.ToLower(h)] = true
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.DisableCompression = true // content_encoding.go
	d.client = &http.Client{
		Transport: transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= maxRedirects {
				return tooManyRedirects(maxRedirects)
			}
			if err := d.allowedURL(req.URL); err != nil {
				return refusedRedirect(err)
			}
			// Go's client names the URL redirected from in Referer,
			// query string and all: a token a client put in the first
			// URL went to the origin redirected to.
			req.Header.Del("Referer")
			return nil
		},
	}
	return d
}

// clientFor returns the client of a request carrying hdr: d.client, or,
// when there are headers, a copy (sharing its transport and connections)
// whose redirects drop them once they leave the first URL's origin.
func (d *downloader) clientFor(hdr http.Header) *http.Client {
	if len(hdr) == 0 {
		return d.client
	}
	c := *d.client
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := d.client.CheckRedirect(req, via); err != nil {
			return err
		}
		dropHeadersOffOrigin(hdr, req, via)
		return nil
	}
	return &c
}

// allowedURL refuses schemes other than http and https and hosts not on
// the allow-list (matched with or without the port). Schemes and host
// names are case-insensitive (RFC 3986); url.Parse lowers the scheme.
func (d *downloader) allowedURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return status.Errorf(codes.InvalidArgument, "scheme %q: only http and https are fetched", u.Scheme)
	}
	if !d.allowed[strings.ToLower(u.Host)] && !d.allowed[strings.ToLower(u.Hostname())] {
		return status.Errorf(codes.PermissionDenied, "host %q is not on this server's allow-list for fetches", u.Host)
	}
	return nil
}

// download fetches uri within ctx (whose deadline is timeout away, for
// messages) and returns the open temporary file holding it (positioned
// at the start; the caller closes and removes it) and its digest under
// fn. hdr (the client's, http_header.go) goes with the request while it
// stays on uri's origin; sum, if set, must match.
func (d *downloader) download(ctx context.Context, uri string, hdr http.Header, sum *checksum, fn digest.Function, timeout time.Duration) (*os.File, digest.Digest, error) {
	u, err := url.Parse(uri)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may carry credentials
		}
		return nil, digest.Digest{}, status.Errorf(codes.InvalidArgument, "not a URL: %v", err)
	}
	if err := d.allowedURL(u); err != nil {
		return nil, digest.Digest{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, digest.Digest{}, status.Error(codes.InvalidArgument, "not a URL this server can request")
	}
	for name, v := range hdr {
		req.Header[name] = v
	}
	resp, err := d.clientFor(hdr).Do(req)
	if err != nil {
		return nil, digest.Digest{}, transportError(ctx, u.Host, err, timeout, false)
	}
	defer resp.Body.Close()
	if err := d.checkResponse(resp); err != nil {
		return nil, digest.Digest{}, err
	}
	body, err := contentReader(resp, u, d.maxBytes)
	if err != nil {
		return nil, digest.Digest{}, transportError(ctx, u.Host, err, timeout, true)
	}
	f, err := os.CreateTemp(d.tmpDir, "fetch-*")
	if err != nil {
		return nil, digest.Digest{}, status.Errorf(codes.Internal, "no room for a temporary file on the server: %v", errors.Unwrap(err))
	}
	dg, err := d.copy(f, body, sum, fn)
	if err != nil {
		err = d.readError(ctx, u.Host, err, timeout)
	} else {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, digest.Digest{}, err
	}
	return f, dg, nil
}

// checkResponse maps the origin's answer to a status: only 200 is
// content. Its message names the status code, not the origin's reason
// phrase, which is the origin's text.
func (d *downloader) checkResponse(resp *http.Response) error {
	answered := fmt.Sprintf("origin answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return status.Error(codes.NotFound, answered)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return status.Error(codes.PermissionDenied, answered)
	case resp.StatusCode != http.StatusOK:
		return status.Error(codes.Unavailable, answered)
	case resp.ContentLength > d.maxBytes:
		return d.tooLarge(resp.ContentLength)
	}
	return nil
}

// readError maps a failed copy: a status of copy's own stands, the rest
// is a transport failure.
func (d *downloader) readError(ctx context.Context, host string, err error, timeout time.Duration) error {
	if errors.Is(err, errEncodedTooLarge) {
		return d.tooLarge(d.maxBytes + 1)
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return transportError(ctx, host, err, timeout, true)
}

// copy writes body to f, hashing as it goes, and checks size and checksum.
func (d *downloader) copy(f *os.File, body io.Reader, sum *checksum, fn digest.Function) (digest.Digest, error) {
	casHash := digest.NewHasher(fn)
	w := []io.Writer{tempWriter{f}, casHash}
	var sriHash hash.Hash
	if sum != nil {
		sriHash = sum.newHash()
		w = append(w, sriHash)
	}
	n, err := io.Copy(io.MultiWriter(w...), io.LimitReader(body, d.maxBytes+1))
	if err != nil {
		return digest.Digest{}, err
	}
	if n > d.maxBytes {
		return digest.Digest{}, d.tooLarge(n)
	}
	if sum != nil && !bytes.Equal(sriHash.Sum(nil), sum.sum) {
		// The content's own checksum is not told: with it, a client
		// could fetch anything from the allowed hosts in two calls, as
		// if no checksum were required (allow_without_checksum off).
		return digest.Digest{}, status.Errorf(codes.Aborted, "checksum mismatch: the content does not have checksum.sri %s", sum)
	}
	return digest.New(fn, fmt.Sprintf("%x", casHash.Sum(nil)), n)
}

func (d *downloader) tooLarge(n int64) error {
	return status.Errorf(codes.ResourceExhausted, "the content (%d bytes or more) is larger than this server's limit of %d bytes", n, d.maxBytes)
}

// tempWriter writes to the temporary file, its errors (a full disk) being
// the server's, not the origin's.
type tempWriter struct{ f *os.File }

func (w tempWriter) Write(p []byte) (int, error) {
	n, err := w.f.Write(p)
	if err != nil {
		return n, status.Errorf(codes.Internal, "writing a temporary file on the server failed: %v", errors.Unwrap(err))
	}
	return n, nil
}
