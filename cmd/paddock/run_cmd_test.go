package main

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	lpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// Bad flags are refused before any connection, with exit status 2 and a
// message naming the flag.
func TestRunFlagErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no command":               {[]string{"run"}, "no command"},
		"unknown API version":      {[]string{"run", "--api-version", "3.0", "--", "true"}, "--api-version"},
		"node properties with 2.0": {[]string{"run", "--api-version", "2.0", "--output-node-property", "mtime", "--", "true"}, "--output-node-property"},
		"bad platform pair":        {[]string{"run", "--platform", "nope", "--", "true"}, "NAME=VALUE"},
		"negative retries":         {[]string{"run", "--retries", "-1", "--", "true"}, "--retries"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(binary, tc.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("paddock %s: %v\n%s\nwant exit status 2 and a message naming %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
}

// fakeExecution is an REv2 endpoint that has every blob and answers every
// Execute with resp: enough for `paddock run` to reach its exit.
type fakeExecution struct {
	repb.UnimplementedContentAddressableStorageServer
	repb.UnimplementedExecutionServer
	resp *repb.ExecuteResponse
}

func (f *fakeExecution) FindMissingBlobs(context.Context, *repb.FindMissingBlobsRequest) (*repb.FindMissingBlobsResponse, error) {
	return &repb.FindMissingBlobsResponse{}, nil
}

func (f *fakeExecution) Execute(_ *repb.ExecuteRequest, s repb.Execution_ExecuteServer) error {
	a, err := anypb.New(f.resp)
	if err != nil {
		return err
	}
	return s.Send(&lpb.Operation{Name: "op", Done: true, Result: &lpb.Operation_Response{Response: a}})
}

// runAgainst runs `paddock run -- true` against a server answering resp
// and returns its exit status and stderr.
func runAgainst(t *testing.T, resp *repb.ExecuteResponse) (int, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return runOn(t, lis, resp)
}

// runOn is runAgainst with the server on lis.
func runOn(t *testing.T, lis net.Listener, resp *repb.ExecuteResponse) (int, string) {
	t.Helper()
	f := &fakeExecution{resp: resp}
	grpctest.Start(t, lis, func(g *grpc.Server) {
		repb.RegisterContentAddressableStorageServer(g, f)
		repb.RegisterExecutionServer(g, f)
	})
	cmd := exec.Command(binary, "run", "--endpoint", lis.Addr().String(), "--no-compiler-deps", "--", "true")
	cmd.Dir = t.TempDir()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// An exit code no process can have (os.Exit would keep its low 8 bits,
// and 256 would read as success) becomes 255, with a message.
func TestRunExitCodeOutOfRange(t *testing.T) {
	for reported, want := range map[int32]int{0: 0, 3: 3, 255: 255, 256: 255, -1: 255, 1 << 30: 255} {
		code, stderr := runAgainst(t, &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: reported}})
		if code != want {
			t.Errorf("reported %d: paddock run exited %d, want %d (stderr %q)", reported, code, want, stderr)
		}
		if (want != int(reported)) != strings.Contains(stderr, "which no process can have") {
			t.Errorf("reported %d: stderr %q", reported, stderr)
		}
	}
}

// The server's words in an error reach the terminal with control
// characters escaped: a status message cannot clear the screen or fake
// a line.
func TestRunEscapesServerMessages(t *testing.T) {
	code, stderr := runAgainst(t, &repb.ExecuteResponse{
		Status:  &spb.Status{Code: int32(codes.Internal), Message: "boom\x1b[2J\rall good"},
		Message: "\x1b]0;title\x07",
	})
	if code != 1 || strings.ContainsAny(stderr, "\x1b\r\x07") || !strings.Contains(stderr, `boom\x1b[2J\rall good`) {
		t.Errorf("exit %d, stderr %q; want 1 and the message escaped", code, stderr)
	}
}

// droppingListener closes the first n connections it accepts, as a farm
// that is restarting does, and hands on the rest.
type droppingListener struct {
	net.Listener
	n       int64
	dropped atomic.Int64
}

func (l *droppingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.dropped.Load() >= l.n {
			return c, err
		}
		l.dropped.Add(1)
		c.Close()
	}
}

// paddock run waits for a farm that drops its first connection, as one
// restarting does: its storage calls are tried again. Before, it exited 1
// at once: "upload: FindMissingBlobs: ... code = Unavailable".
func TestRunRetriesWhileTheFarmIsDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dl := &droppingListener{Listener: lis, n: 1}
	code, stderr := runOn(t, dl, &repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 0}})
	if code != 0 || dl.dropped.Load() != 1 {
		t.Errorf("exit %d after %d dropped connections, stderr %q; want 0 after 1", code, dl.dropped.Load(), stderr)
	}
}
