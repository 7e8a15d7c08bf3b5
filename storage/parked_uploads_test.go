package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/genproto/googleapis/bytestream"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// parkedPart is what parkUploads writes of each upload before it parks
// it: its reservation grows to twice that, rounded up, parkedReserved.
const parkedPart, parkedReserved = 300 << 10, 512 << 10

// parkUploads parks n uploads of blobs declared 4 MiB, each with
// parkedPart bytes written and its stream half-closed, oldest first, and
// returns their resource names.
func parkUploads(t *testing.T, ts *testServer, n int) []string {
	t.Helper()
	var names []string
	for i := range n {
		name := writeName(digest.MustParse(fmt.Sprintf("%064x/%d", i+1, 4<<20)))
		resp, err := write(t, ts, &bytestream.WriteRequest{ResourceName: name, Data: bytes.Repeat([]byte{byte(i)}, parkedPart)})
		if err != nil || resp.CommittedSize != parkedPart {
			t.Fatalf("parking upload %d: %v, %v", i, resp, err)
		}
		names = append(names, name)
	}
	for i, name := range names { // none gave way to another
		if got := committed(t, ts, name); got != parkedPart {
			t.Fatalf("parked upload %d of %d holds %d bytes before the test, want %d", i, n, got, parkedPart)
		}
	}
	return names
}

// committed is what QueryWriteStatus says of the upload name: -1 when it
// has none (NOT_FOUND).
func committed(t *testing.T, ts *testServer, name string) int64 {
	t.Helper()
	st, err := ts.bs.QueryWriteStatus(context.Background(), &bytestream.QueryWriteStatusRequest{ResourceName: name})
	if status.Code(err) == codes.NotFound {
		return -1
	}
	if err != nil {
		t.Fatalf("QueryWriteStatus %s: %v", name, err)
	}
	return st.CommittedSize
}

// TestParkedUploadsGiveWayToAnUpload: uploads parked for a resume hold
// the room their bytes reserved, but give it up, those idle longest
// first, to an upload that finds the CAS full. Before, 16 parked uploads
// holding all of an 8 MiB CAS had every other upload refused
// RESOURCE_EXHAUSTED "uploads of 8388608 bytes are in progress" for as
// long as they stayed parked.
func TestParkedUploadsGiveWayToAnUpload(t *testing.T) {
	dir := t.TempDir()
	disk := newDisk(t, dir, 16*storage.DiskCostIn(dir, parkedReserved)) // 8 MiB and inodes
	ts := startServer(t, storage.ServerOptions{CAS: disk, UploadIdleTimeout: time.Hour})
	parked := parkUploads(t, ts, 16)
	data, d := randData(t, 1<<20)
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), Data: data, FinishWrite: true}); err != nil {
		t.Fatalf("an upload beside parked uploads holding the whole CAS: %v", err)
	}
	if m := missing(t, disk, d); m[d] {
		t.Fatal("the upload that parked uploads gave way to was not stored")
	}
	if got := committed(t, ts, parked[0]); got != -1 {
		t.Fatalf("the upload parked first still holds %d bytes; want it dropped for the new upload", got)
	}
	if got := committed(t, ts, parked[len(parked)-1]); got != parkedPart {
		t.Fatalf("the upload parked last holds %d bytes; want it kept (%d), a 1 MiB upload needs the room of a few", got, parkedPart)
	}
}

// TestParkedUploadsGiveWayToABatch: a BatchUpdateBlobs that finds the CAS
// full has parked uploads give way too.
func TestParkedUploadsGiveWayToABatch(t *testing.T) {
	dir := t.TempDir()
	disk := newDisk(t, dir, 16*storage.DiskCostIn(dir, parkedReserved)) // 8 MiB and inodes
	ts := startServer(t, storage.ServerOptions{CAS: disk, UploadIdleTimeout: time.Hour})
	parkUploads(t, ts, 16)
	data, d := randData(t, 512<<10)
	resp, err := ts.cas.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{InstanceName: "inst",
		Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: d.Proto(), Data: data}}})
	if err != nil {
		t.Fatal(err)
	}
	if st := resp.Responses[0].Status; codes.Code(st.GetCode()) != codes.OK {
		t.Fatalf("a batch beside parked uploads holding the whole CAS: %v", st)
	}
	if m := missing(t, disk, d); m[d] {
		t.Fatal("the batch that parked uploads gave way to was not stored")
	}
}

// TestParkedUploadReclaimedWithoutDataExpires: a Write that resumes a
// parked upload and sends no bytes does not renew its idle time, which
// runs from the parking after its last bytes. Before, each such claim
// stopped the idle timer and its parking started a fresh one: a client
// claiming its parked uploads every 40 s kept them, and the CAS room they
// held, for good.
func TestParkedUploadReclaimedWithoutDataExpires(t *testing.T) {
	const idle = time.Second
	ts := startServer(t, storage.ServerOptions{CAS: newDisk(t, t.TempDir(), 0), UploadIdleTimeout: idle})
	name := writeName(digest.MustParse(fmt.Sprintf("%064x/%d", 1, 4<<20)))
	lastByte := time.Now() // before the bytes, so at or before the parking
	if resp, err := write(t, ts, &bytestream.WriteRequest{ResourceName: name, Data: make([]byte, parkedPart)}); err != nil || resp.CommittedSize != parkedPart {
		t.Fatalf("parking the upload: %v, %v", resp, err)
	}
	tick := time.NewTicker(idle / 5)
	defer tick.Stop()
	claims := 0
	for range tick.C {
		resp, err := write(t, ts, &bytestream.WriteRequest{ResourceName: name, WriteOffset: parkedPart})
		since := time.Since(lastByte)
		switch {
		case status.Code(err) == codes.FailedPrecondition:
			// Being dropped, or the last claim's stream has not let it go.
		case err == nil && resp.CommittedSize == parkedPart:
			claims++
		default: // gone: this Write started a new upload, at 0 bytes
			wantStatus(t, err, codes.InvalidArgument, "0 bytes are committed")
			if since < idle {
				t.Fatalf("the upload was dropped %v after its last byte, before its idle timeout %v", since, idle)
			}
			if claims == 0 {
				t.Fatal("the upload was gone at the first claim; the test claimed nothing")
			}
			return
		}
		// Expired, it goes at the next claim; 20 s more is room for a
		// loaded machine, and the bug kept it for good.
		if since > idle+20*time.Second {
			t.Fatalf("an upload claimed without data every %v (%d times) was still kept %v after its last byte, its idle timeout %v", idle/5, claims, since, idle)
		}
	}
}
