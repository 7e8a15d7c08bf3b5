package storage

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/klauspost/compress/zstd"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// A compressed BatchUpdateBlobs entry holds codec memory for its decoding
// buffer, sized by its digest, before it makes it: while the budget is
// taken it waits (here until its deadline), and an uncompressed entry
// goes on. Before, each request made its buffer at once and then waited
// for one of the few decoders: 512 requests of a 339-byte bomb claiming
// 2 MiB took the storage to 1.5 GB.
func TestCompressedBatchEntriesWaitForCodecMemory(t *testing.T) {
	client := repb.NewContentAddressableStorageClient(servedOverDisk(t))
	data := []byte("a blob sent compressed")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	enc, _ := zstd.NewWriter(nil)
	compressed := &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{
		{Digest: d.Proto(), Data: enc.EncodeAll(data, nil), Compressor: repb.Compressor_ZSTD}}}

	release, err := codecMemory.holdBytes(context.Background(), CodecMemoryBytes)
	if err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := client.BatchUpdateBlobs(short, compressed); status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a compressed entry with no codec memory left: %v, want DEADLINE_EXCEEDED (waiting for it)", err)
	}
	other := []byte("sent as it is")
	od := digest.FromBytes(repb.DigestFunction_SHA256, other)
	resp, err := client.BatchUpdateBlobs(context.Background(), &repb.BatchUpdateBlobsRequest{Requests: []*repb.BatchUpdateBlobsRequest_Request{{Digest: od.Proto(), Data: other}}})
	if err != nil || resp.Responses[0].Status.GetCode() != 0 {
		t.Fatalf("an uncompressed entry with no codec memory left: %v, %v", resp, err)
	}
	release()
	resp, err = client.BatchUpdateBlobs(context.Background(), compressed)
	if err != nil || resp.Responses[0].Status.GetCode() != 0 {
		t.Fatalf("a compressed entry once there is room: %v, %v", resp, err)
	}
}
