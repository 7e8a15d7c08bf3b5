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
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// downloader fetches http(s) URLs for FetchBlob: only from allowed hosts
// (redirects included), within a timeout and a size limit, into a
// temporary file while hashing for the CAS and for the client's checksum.
// Its errors are statuses whose codes are those FetchBlobResponse.status
// documents for failures outside the server's control.
type downloader struct {
	allowed  map[string]bool // "host" or "host:port"
	client   *http.Client
	maxBytes int64
	timeout  time.Duration
	tmpDir   string
}

func newDownloader(allowed []string, maxBytes int64, timeout time.Duration, tmpDir string) *downloader {
	d := &downloader{allowed: map[string]bool{}, maxBytes: maxBytes, timeout: timeout, tmpDir: tmpDir}
	for _, h := range allowed {
		d.allowed[h] = true
	}
	d.client = &http.Client{
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("more than 10 redirects")
			}
			return d.allowedURL(req.URL)
		},
	}
	return d
}

// allowedURL refuses schemes other than http and https and hosts not on
// the allow-list (matched with or without the port).
func (d *downloader) allowedURL(u *url.URL) error {
	if u.Scheme != "http" && u.Scheme != "https" {
		return status.Errorf(codes.InvalidArgument, "scheme %q: only http and https are fetched", u.Scheme)
	}
	if !d.allowed[u.Host] && !d.allowed[u.Hostname()] {
		return status.Errorf(codes.PermissionDenied, "host %q is not on this server's allow-list for fetches", u.Host)
	}
	return nil
}

// download fetches uri and returns the open temporary file holding it
// (positioned at the start; the caller closes and removes it) and its
// digest under fn. sum, if set, must match.
func (d *downloader) download(ctx context.Context, uri string, sum *checksum, fn digest.Function, timeout time.Duration) (*os.File, digest.Digest, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, digest.Digest{}, status.Errorf(codes.InvalidArgument, "not a URL: %v", err)
	}
	if err := d.allowedURL(u); err != nil {
		return nil, digest.Digest{}, err
	}
	if timeout <= 0 || timeout > d.timeout {
		timeout = d.timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, digest.Digest{}, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, digest.Digest{}, transportError(ctx, err, timeout)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return nil, digest.Digest{}, status.Errorf(codes.NotFound, "origin answered %s", resp.Status)
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, digest.Digest{}, status.Errorf(codes.PermissionDenied, "origin answered %s", resp.Status)
	case resp.StatusCode != http.StatusOK:
		return nil, digest.Digest{}, status.Errorf(codes.Unavailable, "origin answered %s", resp.Status)
	case resp.ContentLength > d.maxBytes:
		return nil, digest.Digest{}, d.tooLarge(resp.ContentLength)
	}
	f, err := os.CreateTemp(d.tmpDir, "fetch-*")
	if err != nil {
		return nil, digest.Digest{}, status.Errorf(codes.Internal, "no room for a temporary file on the server: %v", errors.Unwrap(err))
	}
	dg, err := d.copy(ctx, f, resp.Body, sum, fn, timeout)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, digest.Digest{}, err
	}
	return f, dg, nil
}

// copy writes body to f, hashing as it goes, and checks size and checksum.
func (d *downloader) copy(ctx context.Context, f *os.File, body io.Reader, sum *checksum, fn digest.Function, timeout time.Duration) (digest.Digest, error) {
	casHash := digest.NewHasher(fn)
	w := []io.Writer{f, casHash}
	var sriHash hash.Hash
	if sum != nil {
		sriHash = sum.newHash()
		w = append(w, sriHash)
	}
	n, err := io.Copy(io.MultiWriter(w...), io.LimitReader(body, d.maxBytes+1))
	if err != nil {
		return digest.Digest{}, transportError(ctx, err, timeout)
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

// transportError maps a failed request or body read: the timeout is
// DEADLINE_EXCEEDED, a refused redirect keeps its own code, the rest is
// UNAVAILABLE (worth a retry).
func transportError(ctx context.Context, err error, timeout time.Duration) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return status.Errorf(codes.DeadlineExceeded, "no complete answer within %s", timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if st, ok := status.FromError(ue.Err); ok {
			return st.Err()
		}
	}
	return status.Errorf(codes.Unavailable, "%v", err)
}
