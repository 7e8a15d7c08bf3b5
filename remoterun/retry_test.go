package remoterun_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

// flakyStorage makes a farm's storage fail the first three calls of each
// storage method for a passing reason, as a storage that restarts, or is
// busy, does: UNAVAILABLE, then RESOURCE_EXHAUSTED (a ByteStream call
// instead breaks part way, UNAVAILABLE after its first message), then
// ABORTED. Execute and the worker's calls are left alone.
type flakyStorage struct {
	mu     sync.Mutex
	calls  map[string]int
	failed map[string]int // failures made, by method
}

var storageServices = []string{
	"/build.bazel.remote.execution.v2.ContentAddressableStorage/",
	"/build.bazel.remote.execution.v2.ActionCache/",
	"/build.bazel.remote.execution.v2.Capabilities/",
	"/google.bytestream.ByteStream/",
}

// call counts a call of method and returns its number, 0 for a method
// that is not storage's.
func (s *flakyStorage) call(method string) int {
	for _, svc := range storageServices {
		if strings.HasPrefix(method, svc) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.calls[method]++
			return s.calls[method]
		}
	}
	return 0
}

func (s *flakyStorage) fail(method string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failed[method[strings.LastIndex(method[:len(method)-1], "/")+1:]]++
}

// reset starts counting calls again, so that the next three fail too.
func (s *flakyStorage) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[string]int{}
}

var failures = []codes.Code{codes.Unavailable, codes.ResourceExhausted, codes.Aborted}

func (s *flakyStorage) options() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if n := s.call(info.FullMethod); n > 0 && n <= len(failures) {
				s.fail(info.FullMethod)
				return nil, status.Error(failures[n-1], "failed by the test")
			}
			return h(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			n := s.call(info.FullMethod)
			if n == 0 || n > len(failures) {
				return h(srv, ss)
			}
			if n != 2 {
				s.fail(info.FullMethod)
				return status.Error(failures[n-1], "failed by the test")
			}
			b := &breakingStream{ServerStream: ss, upload: info.IsClientStream}
			err := h(srv, b)
			if !b.broke {
				return err // one message was all there was
			}
			s.fail(info.FullMethod)
			return status.Error(codes.Unavailable, "broken by the test")
		}),
	}
}

var errBroken = errors.New("broken by the test")

// breakingStream breaks after the first message of the data it carries:
// received, for an upload; sent, for a read.
type breakingStream struct {
	grpc.ServerStream
	upload bool
	sent   int
	broke  bool
}

func (s *breakingStream) SendMsg(m any) error {
	if s.sent == 1 {
		s.broke = true
		return errBroken
	}
	s.sent++
	return s.ServerStream.SendMsg(m)
}

func (s *breakingStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil || !s.upload {
		return err
	}
	s.broke = true
	return errBroken
}

// paddock run rides out a storage whose every call fails a few times for
// a passing reason, as during a restart: the lookup, the capabilities,
// FindMissingBlobs, the batch upload and the ByteStream upload of an
// input, and the batch and ByteStream reads of the outputs, for an
// executed action and for a cache hit. Before, the first such failure
// ended the run (FindMissingBlobs UNAVAILABLE, exit 1).
func TestRunRidesOutFailingStorageCalls(t *testing.T) {
	flaky := &flakyStorage{calls: map[string]int{}, failed: map[string]int{}}
	f := farmtest.Start(t, farmtest.Options{ServerOptions: flaky.options()})
	// As paddock run dials, with tiny pauses.
	p := client.RetryPolicy{Retries: 5, FirstPause: time.Millisecond, MaxPause: 4 * time.Millisecond}
	c := client.New(grpctest.Dial(t, f.Addr, p.DialOptions()...), client.Options{Retry: &p})
	dir := t.TempDir()
	in := make([]byte, 2560<<10) // by ByteStream: over the 2 MiB batch limit
	if _, err := rand.Read(in); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "in.bin"), in, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, cached := range []bool{false, true} {
		flaky.reset()
		for _, o := range []string{"out.bin", "small.txt"} {
			os.Remove(filepath.Join(dir, o))
		}
		var stdout bytes.Buffer
		res, err := remoterun.Run(t.Context(), c, remoterun.Options{
			Args: []string{"/bin/sh", "-c", "cat in.bin in.bin > out.bin; echo small > small.txt; echo said"},
			Root: dir, Dir: dir, Inputs: []string{"in.bin"}, Outputs: []string{"out.bin", "small.txt"}, Stdout: &stdout,
		})
		if err != nil {
			t.Fatalf("run (cached %v): %v", cached, err)
		}
		if res.ExitCode != 0 || res.Cached != cached || stdout.String() != "said\n" {
			t.Fatalf("run: %+v, stdout %q; want exit code 0, cached %v", res, stdout.String(), cached)
		}
		// 5 MiB by ByteStream, broken after its first 1 MiB message.
		if got, _ := os.ReadFile(filepath.Join(dir, "out.bin")); !bytes.Equal(got, append(append([]byte(nil), in...), in...)) {
			t.Errorf("out.bin: %d bytes, not in.bin twice", len(got))
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "small.txt")); string(got) != "small\n" {
			t.Errorf("small.txt: %q", got)
		}
	}
	var failed []string
	for m := range flaky.failed {
		failed = append(failed, m)
	}
	sort.Strings(failed)
	want := "BatchReadBlobs BatchUpdateBlobs FindMissingBlobs GetActionResult GetCapabilities Read Write"
	if got := strings.Join(failed, " "); got != want {
		t.Errorf("the calls that failed and were retried: %s; want %s", got, want)
	}
}

// A lookup in the action cache that runs out of retries (the farm still
// down) ends the run with its error: the upload would only wait as long
// again. A refusal of the lookup (PERMISSION_DENIED: an identity that
// may execute but not read the cache) still goes on to execute.
func TestRunEndsWhenTheLookupRunsOutOfRetries(t *testing.T) {
	for _, tc := range []struct {
		code    codes.Code
		wantErr bool
	}{{codes.Unavailable, true}, {codes.PermissionDenied, false}} {
		t.Run(tc.code.String(), func(t *testing.T) {
			var finds atomic.Int64
			f := farmtest.Start(t, farmtest.Options{ServerOptions: []grpc.ServerOption{
				grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
					switch info.FullMethod {
					case "/build.bazel.remote.execution.v2.ActionCache/GetActionResult":
						return nil, status.Error(tc.code, "refused by the test")
					case "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs":
						finds.Add(1)
					}
					return h(ctx, req)
				}),
			}})
			p := client.RetryPolicy{Retries: 2, FirstPause: time.Millisecond, MaxPause: time.Millisecond}
			c := client.New(grpctest.Dial(t, f.Addr, p.DialOptions()...), client.Options{Retry: &p})
			dir := t.TempDir()
			_, err := remoterun.Run(t.Context(), c, remoterun.Options{Args: []string{"/bin/true"}, Root: dir, Dir: dir})
			if tc.wantErr != (err != nil) || tc.wantErr != (finds.Load() == 0) {
				t.Errorf("Run: %v, %d FindMissingBlobs calls; want an error %v, and no upload with it", err, finds.Load(), tc.wantErr)
			}
			if tc.wantErr && !strings.Contains(fmt.Sprint(err), "action cache") {
				t.Errorf("Run: %v; want the lookup's error", err)
			}
		})
	}
}

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
