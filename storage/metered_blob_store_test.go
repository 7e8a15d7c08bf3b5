package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// TestMeteredBlobStoreConformance: the decorator is still a BlobStore.
func TestMeteredBlobStoreConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
		return storage.NewMeteredBlobStore(storage.NewMemoryBlobStore())
	})
}

// TestMeteredBlobStoreCounts: bytes written and read are counted, and so
// are an upload that does not match its digest and a stored blob found
// corrupt on read; the disk store reports its size and evictions.
func TestMeteredBlobStoreCounts(t *testing.T) {
	dir := t.TempDir()
	cost := storage.DiskCostIn(dir, 1000) // of each blob below, on disk
	disk, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir, MaxBytes: 2*cost + cost/2})
	if err != nil {
		t.Fatal(err)
	}
	m := storage.NewMeteredBlobStore(disk)
	reg := prometheus.NewRegistry()
	reg.MustRegister(append(m.Collectors(), disk.Collector())...)
	ctx := context.Background()

	data := bytes.Repeat([]byte("x"), 1000)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := m.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	r, err := m.Get(ctx, d, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatal(err)
	}
	r.Close()
	claimed := digest.FromBytes(repb.DigestFunction_SHA256, bytes.Repeat([]byte("z"), 1000))
	if err := m.Put(ctx, claimed, bytes.NewReader(bytes.Repeat([]byte("y"), 1000))); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Put of bytes that do not match: %v, want INVALID_ARGUMENT", err)
	}
	corruptFile(t, dir, d, func(b []byte) []byte { b[0] ^= 1; return b })
	if r, err := m.Get(ctx, d, 0); err == nil {
		_, err = io.ReadAll(r)
		r.Close()
		if status.Code(err) != codes.DataLoss {
			t.Fatalf("read of a corrupt blob: %v, want DATA_LOSS", err)
		}
	}
	// Three more blobs of 1000 bytes: the store, room for two and a half,
	// evicts one.
	// (Room for an upload in progress is made before it is verified, so
	// the store is large enough for the refused upload not to evict.)
	for _, b := range []string{"a", "b", "c"} {
		data := bytes.Repeat([]byte(b), 1000)
		if err := m.Put(ctx, digest.FromBytes(repb.DigestFunction_SHA256, data), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}

	want := fmt.Sprintf(`
# HELP paddock_storage_verification_failures_total Blobs whose bytes did not match their digest: stored ones found corrupt on read (read), uploads refused (write).
# TYPE paddock_storage_verification_failures_total counter
paddock_storage_verification_failures_total{direction="read"} 1
paddock_storage_verification_failures_total{direction="write"} 1
# HELP paddock_storage_cas_evictions_total Blobs evicted from the disk CAS to respect its size bound.
# TYPE paddock_storage_cas_evictions_total counter
paddock_storage_cas_evictions_total 1
# HELP paddock_storage_cas_stored_bytes Bytes of disk the blobs in the disk CAS take, as counted against its max_bytes: each file in whole filesystem blocks, plus its inode.
# TYPE paddock_storage_cas_stored_bytes gauge
paddock_storage_cas_stored_bytes %d
`, 2*cost)
	if err := testutil.GatherAndCompare(reg, bytes.NewBufferString(want),
		"paddock_storage_verification_failures_total", "paddock_storage_cas_evictions_total", "paddock_storage_cas_stored_bytes"); err != nil {
		t.Error(err)
	}
	if w := seriesValue(t, reg, "paddock_storage_cas_bytes_total", "write"); w != 4000 {
		t.Errorf("bytes written %v, want 4000 (the refused upload not counted)", w)
	}
	if r := seriesValue(t, reg, "paddock_storage_cas_bytes_total", "read"); r < 1000 {
		t.Errorf("bytes read %v, want at least the 1000 of the whole read", r)
	}
}

// seriesValue is the value of the counter name{direction=direction}.
func seriesValue(t *testing.T, reg *prometheus.Registry, name, direction string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		for _, m := range f.Metric {
			if f.GetName() == name && len(m.Label) == 1 && m.Label[0].GetValue() == direction {
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("no %s{direction=%q}", name, direction)
	return 0
}
