package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/images/imagetest"
	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestStorageRunsFromItsImage: `paddock images build` makes the role
// images from this test run's (static) binary and pushes them to a
// registry (in this process, on loopback). The storage image then runs as
// an action's container-image in Paddock's own sandbox, with the host's
// network: it serves the CAS from the image's binary, as a rootfs holding
// nothing else would let it, until the action is cancelled.
func TestStorageRunsFromItsImage(t *testing.T) {
	needPaddock(t)
	dir := searchableTempDir(t)
	host := imagetest.Serve(t)
	build := exec.Command(paddockBin, "images", "build", "--binary", "linux/"+runtime.GOARCH+"="+paddockBin,
		"--out", filepath.Join(dir, "oci"), "--tag", "e2e", "--push", host+"/paddock")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("paddock images build: %v\n%s", err, out)
	}
	cfgPath := filepath.Join(dir, "runner.yaml")
	if err := os.WriteFile(cfgPath, []byte("version: 1\nallow_host_network: true # the storage role in the sandbox listens on the host's loopback\nimages:\n  insecure: [\""+host+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, c := startUpClient(t, "--runner-config", cfgPath)

	addr := freeLoopbackAddr(t)
	cmd := &repb.Command{Arguments: []string{"/usr/local/bin/paddock", "storage", "--listen", addr, "--dir", "/tmp/storage"}}
	d := c.prepare(t.Context(), action{cmd: cmd, doNotCache: true, platform: []*repb.Platform_Property{
		{Name: "container-image", Value: "docker://" + host + "/paddock/paddock-storage:e2e"},
		{Name: "dockerNetwork", Value: "standard"},
	}})
	stream, err := c.exec.Execute(t.Context(), &repb.ExecuteRequest{ActionDigest: d, SkipCacheLookup: true})
	if err != nil {
		t.Fatal(err)
	}
	op, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}

	// The storage role in the sandbox answers, and stores and returns a blob.
	inner := newClient(t, addr)
	caps := repb.NewCapabilitiesClient(grpctest.Dial(t, addr))
	waitFor(t, "storage from its image serving on "+addr, faultLimit, func() bool {
		_, err := caps.GetCapabilities(t.Context(), &repb.GetCapabilitiesRequest{})
		return err == nil
	})
	blob := []byte("stored by the storage image")
	digests := inner.upload(t.Context(), blob)
	if got := inner.read(t.Context(), digests[0]); string(got) != string(blob) {
		t.Errorf("read back %q, want %q", got, blob)
	}

	ops := longrunningpb.NewOperationsClient(grpctest.Dial(t, f.addr))
	if _, err := ops.CancelOperation(t.Context(), &longrunningpb.CancelOperationRequest{Name: op.Name}); err != nil {
		t.Fatalf("CancelOperation: %v", err)
	}
	for !op.Done {
		if op, err = stream.Recv(); err != nil {
			t.Fatalf("Execute stream after the cancellation: %v", err)
		}
	}
	resp, err := operationResponse(op)
	if status.Code(err) != codes.Canceled && status.FromProto(resp.GetStatus()).Code() != codes.Canceled {
		t.Errorf("the cancelled storage action ended with %v, %v; want CANCELLED", resp, err)
	}
	f.shutdown()
}

// freeLoopbackAddr returns a 127.0.0.1 address with a port free now, for
// a server the test cannot ask for its port.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := strings.Cut(l.Addr().String(), ":")
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}
	return l.Addr().String()
}
