package s3store_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage/s3store"
	"github.com/paddock-build/paddock/storage/storagetest"
	"github.com/paddock-build/paddock/storage/storagetest/seaweedtest"
)

// flipReader changes one byte of what it reads, at offset at.
type flipReader struct {
	io.ReadCloser
	at, pos int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if f.at >= f.pos && f.at < f.pos+int64(n) {
		p[f.at-f.pos] ^= 0xff
	}
	f.pos += int64(n)
	return n, err
}

// A blob whose bytes were damaged on their way from S3, once, is
// DATA_LOSS for that read, but its object, read again and found sound, is
// kept: one bad read removed it, so a byte flipped in transit (or a
// proxy's wrong Content-Length) deleted a sound object. The next read
// gets the blob.
func TestBlobDamagedInTransitIsKept(t *testing.T) {
	b := startBucket(t)
	backend, err := url.Parse("http://" + b.srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	var damage atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(backend) // keeps the signed Host header
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.Method == http.MethodGet && strings.Contains(resp.Request.URL.Path, "/cas/") && damage.CompareAndSwap(true, false) {
			resp.Body = &flipReader{ReadCloser: resp.Body, at: 10}
		}
		return nil
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	c, err := s3store.New(s3store.Options{
		Endpoint: strings.TrimPrefix(front.URL, "http://"), Bucket: b.name, Prefix: "transit/",
		AccessKeyID: seaweedtest.AccessKey, SecretAccessKey: seaweedtest.SecretKey, MaxConcurrentRequests: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	s := s3store.NewBlobStore(c)
	ctx := context.Background()
	data := bytes.Repeat([]byte("transit "), 1000)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := s.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	damage.Store(true)
	_, err = storagetest.ReadAll(t, s, d, 0)
	if status.Code(err) != codes.DataLoss || !strings.Contains(err.Error(), "read it again") {
		t.Fatalf("a read damaged in transit: %v, want DATA_LOSS saying to read it again", err)
	}
	if missing, err := s.FindMissing(ctx, []digest.Digest{d}); err != nil || len(missing) != 0 {
		t.Fatalf("after a read damaged in transit the sound object is missing: %v, %v", missing, err)
	}
	if got, err := storagetest.ReadAll(t, s, d, 0); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the next read: %d bytes, %v", len(got), err)
	}
}
