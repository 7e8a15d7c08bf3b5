package client

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/retrystream"
	"github.com/paddock-build/paddock/storage"
)

// refusingServer is a storage server on loopback whose answers to one
// method are all code: the call's own, or, with entries, that of each
// entry of a BatchUpdateBlobs reply. It counts that method's calls.
type refusingServer struct {
	method  string
	code    codes.Code
	entries bool

	mu    sync.Mutex
	calls int
}

func (s *refusingServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

func (s *refusingServer) refuses(method string) bool {
	if method != s.method {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	return true
}

func (s *refusingServer) options() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if !s.refuses(info.FullMethod) {
				return h(ctx, req)
			}
			if !s.entries {
				return nil, status.Error(s.code, "refused by the test")
			}
			resp := &repb.BatchUpdateBlobsResponse{}
			for _, r := range req.(*repb.BatchUpdateBlobsRequest).Requests {
				resp.Responses = append(resp.Responses, &repb.BatchUpdateBlobsResponse_Response{
					Digest: r.Digest, Status: &rpcstatus.Status{Code: int32(s.code), Message: "refused by the test"}})
			}
			return resp, nil
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if s.refuses(info.FullMethod) {
				return status.Error(s.code, "refused by the test")
			}
			return h(srv, ss)
		}),
	}
}

// storageCall is one storage call the client makes, through the method
// it calls.
type storageCall struct {
	method  string
	entries bool // the refusal is in the entries of a batch reply
	// do makes the call; large is a file blob that goes by ByteStream,
	// stored beforehand for reads.
	do func(ctx context.Context, c *Client, large Blob) error
}

var storageCalls = map[string]storageCall{
	"FindMissingBlobs": {method: repb.ContentAddressableStorage_FindMissingBlobs_FullMethodName, do: func(ctx context.Context, c *Client, _ Blob) error {
		_, err := c.Upload(ctx, []Blob{NewBlob([]byte("small"))})
		return err
	}},
	"GetActionResult": {method: repb.ActionCache_GetActionResult_FullMethodName, do: func(ctx context.Context, c *Client, _ Blob) error {
		_, err := c.CachedResult(ctx, NewBlob([]byte("an action")).Digest)
		return err
	}},
	"BatchUpdateBlobs entries": {method: repb.ContentAddressableStorage_BatchUpdateBlobs_FullMethodName, entries: true, do: func(ctx context.Context, c *Client, _ Blob) error {
		_, err := c.Upload(ctx, []Blob{NewBlob([]byte("small"))})
		return err
	}},
	"ByteStream Write": {method: retrystream.ByteStreamWrite, do: func(ctx context.Context, c *Client, large Blob) error {
		return c.Write(ctx, large)
	}},
	"ByteStream Read": {method: retrystream.ByteStreamRead, do: func(ctx context.Context, c *Client, large Blob) error {
		return c.ReadTo(ctx, large.Digest, &bytes.Buffer{})
	}},
}

// Each storage call is tried again, within the budget, when it fails for
// a passing reason, and never when it is refused (INVALID_ARGUMENT and
// the rest) or missed (NOT_FOUND): the calls are counted at the server.
func TestStorageCallsAreRetriedOnlyForPassingReasons(t *testing.T) {
	p := RetryPolicy{Retries: 3, FirstPause: time.Microsecond, MaxPause: time.Microsecond}
	large := make([]byte, 4<<10)
	path := filepath.Join(t.TempDir(), "large")
	if err := os.WriteFile(path, large, 0o644); err != nil {
		t.Fatal(err)
	}
	largeBlob, err := FileBlob(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		code  codes.Code
		tries int
	}{
		{codes.Unavailable, 4}, {codes.ResourceExhausted, 4}, {codes.Aborted, 4}, {codes.DeadlineExceeded, 4},
		{codes.InvalidArgument, 1}, {codes.FailedPrecondition, 1}, {codes.NotFound, 1},
		{codes.PermissionDenied, 1}, {codes.Unauthenticated, 1},
	} {
		for name, call := range storageCalls {
			t.Run(fmt.Sprintf("%s %s", name, tc.code), func(t *testing.T) {
				s := &refusingServer{method: call.method, code: tc.code, entries: call.entries}
				cas := storage.NewMemoryBlobStore()
				if err := cas.Put(t.Context(), largeBlob.Digest, bytes.NewReader(large)); err != nil {
					t.Fatal(err)
				}
				srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache()})
				addr := grpctest.Listen(t, srv.Register, append(srv.GRPCServerOptions(), s.options()...)...)
				c := New(grpctest.Dial(t, addr, p.DialOptions()...), Options{MaxBatchBytes: 1 << 10, Retry: &p})
				err := call.do(t.Context(), c, largeBlob)
				if status.Code(err) != tc.code || s.count() != tc.tries {
					t.Errorf("%d calls, ending in %v; want %d, ending in %v", s.count(), err, tc.tries, tc.code)
				}
			})
		}
	}
}

// refusedDials is a dialer that says on a channel when a dial fails.
func refusedDials() (grpc.DialOption, chan struct{}) {
	refused := make(chan struct{}, 1000)
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		if err != nil {
			refused <- struct{}{}
		}
		return c, err
	}), refused
}

// awaitRefusedDials waits for n refused dials while call (its result on
// result) is still waiting: the server being down must hold the call, not
// end it, and the client must keep dialing.
func awaitRefusedDials(t *testing.T, call string, refused <-chan struct{}, result <-chan error, n int) {
	t.Helper()
	for i := range n {
		select {
		case <-refused:
		case err := <-result:
			t.Fatalf("%s ended while the server was down (%d of %d refused dials seen): %v", call, i, n, err)
		case <-time.After(30 * time.Second):
			t.Fatalf("the client did not dial again for %s (%d of %d refused dials seen)", call, i, n)
		}
	}
}

// awaitCallResult waits for call's result once the server is back: it must
// end, within 30 s, without an error.
func awaitCallResult(t *testing.T, call string, result <-chan error) {
	t.Helper()
	select {
	case err := <-result:
		if err != nil {
			t.Fatalf("%s: %v", call, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not end", call)
	}
}

// A farm that is down when the client starts (a port that refuses
// connections, as after a kill -9) and comes up after a few refused
// dials is waited for: by an upload, and by an Execute whose stream
// cannot even be opened at first. Before, the upload failed at once with
// FindMissingBlobs UNAVAILABLE, and so did the Execute.
func TestCallsWaitForAFarmThatIsDown(t *testing.T) {
	// A budget of about 2 s from the first refusal: ample for the test to
	// start the server once it has seen two dials refused.
	p := RetryPolicy{Retries: 200, FirstPause: time.Millisecond, MaxPause: 10 * time.Millisecond}
	blob := NewBlob([]byte("uploaded while the farm came up"))
	for name, call := range map[string]func(context.Context, *Client) error{
		"Upload": func(ctx context.Context, c *Client) error {
			_, err := c.Upload(ctx, []Blob{blob})
			return err
		},
		"Execute": func(ctx context.Context, c *Client) error {
			resp, err := c.Execute(ctx, &repb.ExecuteRequest{ActionDigest: blob.Digest.Proto()})
			if err == nil && resp.GetResult().GetExitCode() != 3 {
				err = fmt.Errorf("exit code %d, want 3", resp.GetResult().GetExitCode())
			}
			return err
		},
	} {
		t.Run(name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := lis.Addr().String()
			lis.Close() // down
			dialer, refused := refusedDials()
			c := New(grpctest.Dial(t, "passthrough:///"+addr, append(p.DialOptions(), dialer)...), Options{Retry: &p})
			result := make(chan error, 1)
			go func() { result <- call(t.Context(), c) }()
			awaitRefusedDials(t, name, refused, result, 2)
			if lis, err = net.Listen("tcp", addr); err != nil {
				t.Fatal(err)
			}
			cas := storage.NewMemoryBlobStore()
			srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: storage.NewMemoryActionCache()})
			grpctest.Start(t, lis, func(g *grpc.Server) {
				srv.Register(g)
				repb.RegisterExecutionServer(g, &restartingScheduler{executes: 1}) // answers exit code 3
			}, srv.GRPCServerOptions()...)
			awaitCallResult(t, name+" once the farm was up", result)
			if name == "Upload" {
				if missing, err := cas.FindMissing(t.Context(), []digest.Digest{blob.Digest}); err != nil || len(missing) != 0 {
					t.Errorf("the blob was not stored: missing %v, %v", missing, err)
				}
			}
		})
	}
}
