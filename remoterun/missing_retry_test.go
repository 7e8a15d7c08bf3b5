package remoterun_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/remoterun"
	"github.com/paddock-build/paddock/rev2"
)

// damageAtRest truncates the farm's stored copy of d in place, as a disk
// fault would: the CAS still indexes it, so FindMissingBlobs reports it
// present and the client's upload skips it, and the farm finds it corrupt
// only when it reads it.
func damageAtRest(t *testing.T, f *farmtest.Farm, d digest.Digest) {
	t.Helper()
	h := d.Hash()
	p := filepath.Join(f.Dir, "storage", "cas", "sha256", h[:2], h)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b[:len(b)/2], 0o444); err != nil {
		t.Fatal(err)
	}
}

// paddock run uploads again what the farm answers is missing and executes
// again, as the spec asks of a client and as Bazel does: here the farm's
// copy of a blob that FindMissingBlobs had reported present turned out
// corrupt. Before, the run ended with that FAILED_PRECONDITION. Two
// cases: an input file (the worker finds it, and answers in the
// ExecuteResponse's status) and the Command (the scheduler finds it, and
// refuses the Execute call).
func TestRunUploadsAgainWhatTheFarmFoundMissing(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, f *farmtest.Farm, c *client.Client, first *remoterun.Result, input digest.Digest)
	}{
		{"input file", func(t *testing.T, f *farmtest.Farm, _ *client.Client, _ *remoterun.Result, input digest.Digest) {
			damageAtRest(t, f, input)
		}},
		{"command", func(t *testing.T, f *farmtest.Farm, c *client.Client, first *remoterun.Result, _ digest.Digest) {
			var action repb.Action
			if err := c.ReadProto(t.Context(), first.Action, &action); err != nil {
				t.Fatal(err)
			}
			cmd, err := digest.FromProto(repb.DigestFunction_SHA256, action.GetCommandDigest(), "command_digest")
			if err != nil {
				t.Fatal(err)
			}
			damageAtRest(t, f, cmd)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := farmtest.Start(t, farmtest.Options{})
			c := client.New(grpctest.Dial(t, f.Addr), client.Options{})
			dir := t.TempDir()
			content := []byte("the input's true content, " + tc.name + "\n")
			if err := os.WriteFile(filepath.Join(dir, "in.txt"), content, 0o644); err != nil {
				t.Fatal(err)
			}
			run := func() (*remoterun.Result, string) {
				t.Helper()
				var out bytes.Buffer
				res, err := remoterun.Run(t.Context(), c, remoterun.Options{
					Args: []string{"cat", "in.txt"}, Root: dir, Dir: dir, Inputs: []string{"in.txt"},
					NoCompilerDeps: true, SkipCache: true, Stdout: &out,
				})
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				return res, out.String()
			}
			first, _ := run()
			tc.damage(t, f, c, first, digest.FromBytes(repb.DigestFunction_SHA256, content))
			executed := f.Runner.Calls()
			res, out := run()
			if res.ExitCode != 0 || out != string(content) {
				t.Fatalf("exit code %d, stdout %q; want 0 and the input's true content", res.ExitCode, out)
			}
			if res.Uploaded.MissingBlobs != 1 || res.Uploaded.Blobs != first.Uploaded.Blobs {
				t.Errorf("uploaded %+v, want the damaged blob once, of the %d the action has", res.Uploaded, first.Uploaded.Blobs)
			}
			if n := f.Runner.Calls() - executed; n != 1 {
				t.Errorf("the command ran %d times in the second run, want once (after the upload)", n)
			}
		})
	}
}

// A farm that answers every Execute that a blob of the action is missing,
// however often it is sent, ends the run with that FAILED_PRECONDITION
// after a bounded number of uploads (three Executes), instead of looping.
func TestRunGivesUpOnAFarmThatKeepsLosingABlob(t *testing.T) {
	content := []byte("lost again and again\n")
	lost := digest.FromBytes(repb.DigestFunction_SHA256, content)
	var executes atomic.Int64
	f := farmtest.Start(t, farmtest.Options{ServerOptions: []grpc.ServerOption{
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if info.FullMethod != "/build.bazel.remote.execution.v2.Execution/Execute" {
				return h(srv, ss)
			}
			executes.Add(1)
			return rev2.Missing(rev2.MissingBlob{Digest: lost, What: "input file in.txt"})
		}),
	}})
	c := client.New(grpctest.Dial(t, f.Addr), client.Options{})
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "in.txt"), content, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := remoterun.Run(t.Context(), c, remoterun.Options{
		Args: []string{"cat", "in.txt"}, Root: dir, Dir: dir, Inputs: []string{"in.txt"}, NoCompilerDeps: true, SkipCache: true,
	})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), lost.String()) {
		t.Fatalf("run: %v; want the farm's FAILED_PRECONDITION naming the blob", err)
	}
	if n := executes.Load(); n != 3 {
		t.Errorf("%d Execute calls, want 3: the first and two after uploading again", n)
	}
}
