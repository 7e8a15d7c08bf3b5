package storage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/storage"
)

// TestMaxCASBlobSize: the largest blob a disk CAS holds is advertised as
// max_cas_blob_size_bytes, and an upload of a larger one is
// INVALID_ARGUMENT at its first message, as the spec asks: before, the
// farm advertised 0 (no limit) and refused such a blob RESOURCE_EXHAUSTED
// once its bytes had come. A blob of the size advertised is stored.
func TestMaxCASBlobSize(t *testing.T) {
	if got := storage.DiskMaxBlobBytes(1 << 20); got != 1<<20-4096 {
		t.Errorf("DiskMaxBlobBytes(1 MiB) = %d, want 1 MiB less a block (the inode takes 256 bytes of the last)", got)
	}
	if got := storage.DiskMaxBlobBytes(0); got != 0 {
		t.Errorf("DiskMaxBlobBytes(0) = %d, want 0 (no bound)", got)
	}
	ts := startServer(t, storage.ServerOptions{CAS: newDisk(t, t.TempDir(), 1<<20), MaxCASBlobBytes: storage.DiskMaxBlobBytes(1 << 20)})
	caps, err := ts.caps.GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil || caps.CacheCapabilities.MaxCasBlobSizeBytes != 1<<20-4096 {
		t.Fatalf("max_cas_blob_size_bytes %d, %v; want %d", caps.GetCacheCapabilities().GetMaxCasBlobSizeBytes(), err, 1<<20-4096)
	}
	write := func(data string) error {
		d := sha(data)
		w, err := ts.bs.Write(context.Background())
		if err != nil {
			return err
		}
		if err := w.Send(&bytestream.WriteRequest{ResourceName: fmt.Sprintf("uploads/u/blobs/%s/%d", d.Hash(), d.SizeBytes()), Data: []byte(data[:10])}); err != nil {
			return err
		}
		for off := 10; off < len(data); off += 64 << 10 {
			end := min(off+64<<10, len(data))
			if err := w.Send(&bytestream.WriteRequest{WriteOffset: int64(off), Data: []byte(data[off:end]), FinishWrite: end == len(data)}); err != nil {
				break // refused: CloseAndRecv says why
			}
		}
		_, err = w.CloseAndRecv()
		return err
	}
	wantStatus(t, write(strings.Repeat("x", 1<<20-4095)), codes.InvalidArgument, "max_cas_blob_size_bytes, 1044480")
	if err := write(strings.Repeat("y", 1<<20-4096)); err != nil {
		t.Fatalf("a blob of max_cas_blob_size_bytes: %v", err)
	}
}
