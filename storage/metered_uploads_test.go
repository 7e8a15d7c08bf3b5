package storage_test

import (
	"bytes"
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// Every upload whose bytes do not match its digest is a write verification
// failure, whichever call carried it: an outside probe's three bad
// BatchUpdateBlobs entries left the counter at 0 (the service checks a
// batch entry itself, before the store's Put), though Bazel sends most
// small blobs by batch; nor did ByteStream uploads longer or shorter than
// their digest's size. A blob refused for want of room is not one,
// though it is INVALID_ARGUMENT when larger than the whole store.
func TestEveryMismatchedUploadIsCounted(t *testing.T) {
	dir := t.TempDir()
	m := storage.NewMeteredBlobStore(newDisk(t, dir, storage.DiskCostIn(dir, 4096)))
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.Collectors()...)
	ts := startServer(t, storage.ServerOptions{CAS: m})
	ctx := context.Background()

	good := bytes.Repeat([]byte("g"), 100)
	d := digest.FromBytes(repb.DigestFunction_SHA256, good)
	bad := bytes.Repeat([]byte("b"), 100)
	resp, err := ts.cas.BatchUpdateBlobs(ctx, &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: d.Proto(), Data: bad},       // hashes to another digest
		{Digest: d.Proto(), Data: good[:99]}, // one byte short
		{Digest: d.Proto(), Data: good},      // stored
	}})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []codes.Code{codes.InvalidArgument, codes.InvalidArgument, codes.OK} {
		if got := codes.Code(resp.Responses[i].Status.GetCode()); got != want {
			t.Fatalf("requests[%d]: %v, want %v", i, got, want)
		}
	}
	d2 := digest.FromBytes(repb.DigestFunction_SHA256, []byte("other"))
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d2), Data: []byte("tampr"), FinishWrite: true}); err == nil {
		t.Fatal("a ByteStream upload that does not hash to its digest was accepted")
	}
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d2), Data: []byte("other and more"), FinishWrite: true}); err == nil {
		t.Fatal("a ByteStream upload longer than its digest's size was accepted")
	}
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d2), Data: []byte("oth"), FinishWrite: true}); err == nil {
		t.Fatal("a ByteStream upload shorter than its digest's size was accepted")
	}
	huge := bytes.Repeat([]byte("h"), 64<<10)
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(digest.FromBytes(repb.DigestFunction_SHA256, huge)), Data: huge, FinishWrite: true}); err == nil {
		t.Fatal("a blob larger than the whole store was accepted")
	}
	if got := seriesValue(t, reg, "paddock_storage_verification_failures_total", "write"); got != 5 {
		t.Errorf("write verification failures %v, want 5: two batch entries and three ByteStream uploads (a blob too large for the store is not one)", got)
	}
}
