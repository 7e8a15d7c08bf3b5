package remoterun_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/remoterun"
)

// executeCounter is a connection that counts the Execute calls made on it.
type executeCounter struct {
	grpc.ClientConnInterface
	executes atomic.Int64
}

func (c *executeCounter) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	if method == "/"+repb.Execution_ServiceDesc.ServiceName+"/Execute" {
		c.executes.Add(1)
	}
	return c.ClientConnInterface.NewStream(ctx, desc, method, opts...)
}

// A rerun asks the action cache first, as recc does: a hit calls no
// Execute (which an identity with only cas-read and ac-read may not) and
// uploads nothing, and writes the outputs and stdout. A cached result
// whose output is gone from the CAS is executed again rather than failing
// halfway through, and --skip-cache never looks.
func TestRerunLooksInTheActionCacheFirst(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	conn := &executeCounter{ClientConnInterface: f.Conn}
	c := client.New(conn, client.Options{})
	dir := t.TempDir()
	run := func(skip bool) (*remoterun.Result, string) {
		t.Helper()
		var stdout bytes.Buffer
		res, err := remoterun.Run(t.Context(), c, remoterun.Options{
			Args: []string{"/bin/sh", "-c", "echo made > out.txt; echo said"},
			Root: dir, Dir: dir, Outputs: []string{"out.txt"}, Stdout: &stdout, SkipCache: skip,
		})
		if err != nil {
			t.Fatal(err)
		}
		return res, stdout.String()
	}
	if res, out := run(false); res.Cached || out != "said\n" || conn.executes.Load() != 1 {
		t.Fatalf("first run: %+v, stdout %q, %d Execute calls", res, out, conn.executes.Load())
	}
	os.Remove(filepath.Join(dir, "out.txt"))
	res, out := run(false)
	if !res.Cached || out != "said\n" || conn.executes.Load() != 1 || res.Uploaded.Blobs != 0 {
		t.Fatalf("rerun: %+v, stdout %q, %d Execute calls; want a hit from the action cache, nothing uploaded, no Execute", res, out, conn.executes.Load())
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "out.txt")); string(b) != "made\n" {
		t.Fatalf("out.txt from the cache: %q", b)
	}

	// The cached result now names an output the CAS does not hold.
	ar, err := f.AC.Get(context.Background(), "", res.Action)
	if err != nil {
		t.Fatal(err)
	}
	ar.OutputFiles[0].Digest = digest.FromBytes(res.Action.Function(), []byte("never stored")).Proto()
	if err := f.AC.Put(context.Background(), "", res.Action, ar); err != nil {
		t.Fatal(err)
	}
	if res, out := run(false); out != "said\n" || conn.executes.Load() != 2 || strings.Contains(out, "said\nsaid") {
		t.Fatalf("a cached result whose output is gone: %+v, stdout %q, %d Execute calls; want it executed again", res, out, conn.executes.Load())
	}
	if run(true); conn.executes.Load() != 3 {
		t.Fatalf("--skip-cache: %d Execute calls, want 3", conn.executes.Load())
	}
}
