package storage_test

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/testdisk"
	"github.com/paddock-build/paddock/storage"
)

// refusals reads paddock_storage_cas_disk_refusals_total by reason from
// c, through a registry as a scrape would.
func refusals(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "paddock_storage_cas_disk_refusals_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			out[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
		}
	}
	return out
}

// wholeRefusal checks a refusal's message names the call, the blob and
// the reason, uncut.
func wholeRefusal(t *testing.T, what string, code codes.Code, msg, call, blob string) {
	t.Helper()
	t.Logf("%s: %v %s", what, code, msg)
	if code != codes.ResourceExhausted || !strings.Contains(msg, call) || !strings.Contains(msg, blob) ||
		!strings.Contains(msg, "not stored: the CAS's disk is full") || !strings.Contains(msg, "kept free for the rest of the farm") || strings.HasSuffix(msg, "...") || strings.Contains(msg, "rpc error") {
		t.Errorf("%s on a full disk: %v %q; want RESOURCE_EXHAUSTED naming the call (%s), the blob (%s) and the whole reason", what, code, msg, call, blob)
	}
}

// TestDiskRefusalsAreCountedAndSaidWhole: on a filesystem filled by other
// files, uploads through BatchUpdateBlobs and ByteStream Write are
// refused, each counted by its reason, with a message naming the call,
// the blob and the reason in full. Before, no metric counted them, and a
// batch entry's message was cut at 120 bytes, before the reason.
func TestDiskRefusalsAreCountedAndSaidWhole(t *testing.T) {
	dir := testdisk.Mount(t, 8<<20, 10000)
	disk := newDisk(t, dir, 1<<30)
	ts := startServer(t, storage.ServerOptions{CAS: disk})
	if got := refusals(t, disk.Collector()); len(got) != 4 || got["disk_kept_free"] != 0 {
		t.Fatalf("refusals before any: %v; want each of the 4 reasons at 0", got)
	}
	testdisk.Fill(t, dir)

	b1, d1 := blobOf(1, 4096)
	resp, err := ts.cas.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{
		InstanceName: "inst", Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d1.Proto(), Data: b1}}})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Responses[0].Status
	wholeRefusal(t, "BatchUpdateBlobs", codes.Code(st.GetCode()), st.GetMessage(), "BatchUpdateBlobs requests[0].digest", d1.String())

	b2, d2 := blobOf(2, 4096)
	_, err = write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d2), Data: b2, FinishWrite: true})
	wholeRefusal(t, "ByteStream Write", status.Code(err), status.Convert(err).Message(), "ByteStream Write", d2.String())

	if got := refusals(t, disk.Collector()); got["disk_kept_free"] != 2 || got["disk_full"] != 0 {
		t.Fatalf("refusals after two uploads on a full disk: %v; want disk_kept_free 2", got)
	}
}

// TestBlobsLargerThanTheStoreAreRefusedForGood: a blob larger than
// max_bytes, or than the CAS's whole filesystem less what it keeps free,
// is INVALID_ARGUMENT, counted as larger_than_bound, before any of it is
// written: clients retry RESOURCE_EXHAUSTED, and a 410 MB blob for a
// 400 MiB disk was sent 13 times.
func TestBlobsLargerThanTheStoreAreRefusedForGood(t *testing.T) {
	dir := testdisk.Mount(t, 8<<20, 10000)
	for _, tc := range []struct {
		name     string
		maxBytes int64
		size     int
		reason   string
	}{
		{"past max_bytes", 2 << 20, 3 << 20, "larger than the whole CAS"},
		{"past the filesystem", 1 << 30, 9 << 20, "larger than the CAS's whole filesystem"},
	} {
		disk := newDisk(t, filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")), tc.maxBytes)
		b, d := blobOf(3, tc.size)
		err := disk.Put(context.Background(), d, bytes.NewReader(b))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.reason) || !strings.Contains(err.Error(), d.String()) {
			t.Errorf("%s: %v; want INVALID_ARGUMENT naming the blob and %q", tc.name, err, tc.reason)
		}
		if got := refusals(t, disk.Collector()); got["larger_than_bound"] != 1 {
			t.Errorf("%s: refusals %v; want larger_than_bound 1", tc.name, got)
		}
	}
	fits := newDisk(t, filepath.Join(dir, "fits"), 1<<30)
	b, d := blobOf(4, 2<<20)
	if err := fits.Put(context.Background(), d, bytes.NewReader(b)); err != nil {
		t.Errorf("a 2 MiB blob on an 8 MiB filesystem: %v", err)
	}
}
