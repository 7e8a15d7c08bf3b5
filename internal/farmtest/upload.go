package farmtest

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
)

// UploadAction stores on instance, through conn's CAS, an Action running
// argv and its Command and input root, and returns the Action's digest.
// The input root is empty, or holds the file in.txt with input as its
// contents where input is not nil.
func UploadAction(t testing.TB, conn *grpc.ClientConn, instance string, input []byte, argv ...string) digest.Digest {
	t.Helper()
	cmd := marshal(t, &repb.Command{Arguments: argv})
	dir := &repb.Directory{}
	blobs := [][]byte{cmd}
	if input != nil {
		dir.Files = []*repb.FileNode{{Name: "in.txt", Digest: digest.FromBytes(repb.DigestFunction_SHA256, input).Proto()}}
		blobs = append(blobs, input)
	}
	root := marshal(t, dir)
	cmdD, rootD := digest.FromBytes(repb.DigestFunction_SHA256, cmd), digest.FromBytes(repb.DigestFunction_SHA256, root)
	action := marshal(t, &repb.Action{CommandDigest: cmdD.Proto(), InputRootDigest: rootD.Proto()})
	var reqs []*repb.BatchUpdateBlobsRequest_Request
	for _, b := range append(blobs, root, action) {
		reqs = append(reqs, &repb.BatchUpdateBlobsRequest_Request{Digest: digest.FromBytes(repb.DigestFunction_SHA256, b).Proto(), Data: b})
	}
	resp, err := repb.NewContentAddressableStorageClient(conn).BatchUpdateBlobs(t.Context(),
		&repb.BatchUpdateBlobsRequest{InstanceName: instance, Requests: reqs})
	if err != nil {
		t.Fatalf("upload action: %v", err)
	}
	for _, r := range resp.Responses {
		if r.Status.GetCode() != 0 {
			t.Fatalf("upload action: %v", r.Status)
		}
	}
	return digest.FromBytes(repb.DigestFunction_SHA256, action)
}

func marshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
