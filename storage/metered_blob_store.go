package storage

import (
	"context"
	"errors"
	"io"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/prom"
)

// MeteredBlobStore counts what passes through a BlobStore for Prometheus:
// bytes read and written, and verification failures (a stored blob whose
// bytes no longer match its digest, found on read; an upload that does
// not match the digest it claims). It decorates the store the storage
// services serve, so the figures are what clients moved.
type MeteredBlobStore struct {
	inner   BlobStore
	read    prometheus.Counter
	written prometheus.Counter
	badRead prometheus.Counter
	badPut  prometheus.Counter
	vecs    []prometheus.Collector
}

// NewMeteredBlobStore wraps inner. Register the result's Collectors.
func NewMeteredBlobStore(inner BlobStore) *MeteredBlobStore {
	bytes := prom.CounterVec("paddock_storage_cas_bytes_total",
		"Blob bytes read from and written to the CAS by its clients, by direction (read, write).", "direction")
	bad := prom.CounterVec("paddock_storage_verification_failures_total",
		"Blobs whose bytes did not match their digest: stored ones found corrupt on read (read), uploads refused (write).", "direction")
	return &MeteredBlobStore{
		inner: inner,
		read:  bytes.WithLabelValues("read"), written: bytes.WithLabelValues("write"),
		badRead: bad.WithLabelValues("read"), badPut: bad.WithLabelValues("write"),
		vecs: []prometheus.Collector{bytes, bad},
	}
}

// Collectors are the store's metrics, to register on the role's registry.
func (m *MeteredBlobStore) Collectors() []prometheus.Collector { return m.vecs }

// FindMissing implements BlobStore.
func (m *MeteredBlobStore) FindMissing(ctx context.Context, ds []digest.Digest) ([]digest.Digest, error) {
	return m.inner.FindMissing(ctx, ds)
}

// Get implements BlobStore.
func (m *MeteredBlobStore) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	r, err := m.inner.Get(ctx, d, offset)
	if err != nil {
		return nil, err
	}
	return &meteredReader{ReadCloser: r, m: m}, nil
}

// Put implements BlobStore.
func (m *MeteredBlobStore) Put(ctx context.Context, d digest.Digest, r io.Reader) error {
	err := m.inner.Put(ctx, d, r)
	switch {
	case err == nil:
		m.written.Add(float64(d.SizeBytes()))
	case status.Code(err) == codes.InvalidArgument && !errors.Is(err, ErrLargerThanStore):
		m.badPut.Inc()
	}
	return err
}

// RefuseUpload counts an upload the service refused before it reached Put,
// its bytes not matching its digest: a BatchUpdateBlobs entry, which the
// CAS service checks itself (countMismatch).
func (m *MeteredBlobStore) RefuseUpload() { m.badPut.Inc() }

// uploadRefusals is a store that counts the uploads refused before its
// Put (MeteredBlobStore).
type uploadRefusals interface{ RefuseUpload() }

// countMismatch counts an upload to cas refused for bytes that do not
// match its digest, when cas counts them, and returns err.
func countMismatch(cas BlobStore, err error) error {
	if c, ok := cas.(uploadRefusals); ok {
		c.RefuseUpload()
	}
	return err
}

// meteredReader counts the bytes a reader yields, and a DATA_LOSS ending
// as a verification failure.
type meteredReader struct {
	io.ReadCloser
	m *MeteredBlobStore
}

func (r *meteredReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.m.read.Add(float64(n))
	if err != nil && err != io.EOF && status.Code(err) == codes.DataLoss {
		r.m.badRead.Inc()
	}
	return n, err
}

var _ BlobStore = (*MeteredBlobStore)(nil)
