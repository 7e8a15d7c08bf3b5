package workerclient

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/testlog"
)

// TestFailureLogSaysEachErrorOnceInAWhile: a failure is logged when its
// error differs from the last one logged, the same one only
// failureLogEvery later (counting the attempts between), and the next
// registration after logged failures.
func TestFailureLogSaysEachErrorOnceInAWhile(t *testing.T) {
	logs := &testlog.Buffer{}
	f := newFailureLog(slog.New(slog.NewTextHandler(logs, nil)), "w1")
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.now = func() time.Time { return now }
	refused := errors.New("connect to the scheduler: connection refused")
	start := now
	for range 10 {
		f.failed(refused)
		now = now.Add(time.Second)
	}
	now = start.Add(failureLogEvery)
	f.failed(refused)
	f.failed(errors.New("register with the scheduler: unknown service"))
	f.failed(refused)
	f.registered()
	f.registered()
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	want := []string{"connection refused\"", "connection refused\" attempts_since_last_logged=9", "unknown service", "connection refused\"", "registered"}
	if len(lines) != len(want) {
		t.Fatalf("logged:\n%s\nwant %d lines", logs.String(), len(want))
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) || !strings.Contains(lines[i], "worker=w1") {
			t.Errorf("line %d: %s; want %q and the worker", i, lines[i], w)
		}
	}
}

// runClient runs a client of conn, logging to logs, until the test ends.
func runClient(t *testing.T, conn grpc.ClientConnInterface, logs *testlog.Buffer) *Client {
	t.Helper()
	c, err := New(Options{Conn: conn, Register: &workerpb.Register{WorkerId: "w1", Concurrency: 1}, ReconnectDelay: time.Millisecond,
		Logger:  slog.New(slog.NewTextHandler(logs, nil)),
		Handler: func(context.Context, *workerpb.Assignment) *repb.ExecuteResponse { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }() // returns ctx's error at cleanup
	t.Cleanup(func() { cancel(); <-done })
	return c
}

// TestWorkerAtTheWrongServerSaysSo: a worker whose scheduler address
// reaches a server that is not a scheduler (storage's port, say) logs the
// UNIMPLEMENTED answer once, however often it tries, and is not
// registered (Connected), where it used to log nothing at all.
func TestWorkerAtTheWrongServerSaysSo(t *testing.T) {
	var attempts atomic.Int64
	addr := grpctest.Listen(t, func(*grpc.Server) {}, grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		attempts.Add(1)
		return status.Error(codes.Unimplemented, "unknown service paddock.worker.v1.WorkerService")
	}))
	logs := &testlog.Buffer{}
	c := runClient(t, grpctest.Dial(t, "passthrough:///"+addr), logs)
	for deadline := time.Now().Add(10 * time.Second); attempts.Load() < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d attempts to register", attempts.Load())
		}
	}
	if c.Connected() {
		t.Fatal("registered with a server that is not a scheduler")
	}
	if n := strings.Count(logs.String(), "Unimplemented"); n != 1 {
		t.Fatalf("the UNIMPLEMENTED answer was logged %d times in %d attempts, want once:\n%s", n, attempts.Load(), logs.String())
	}
}

// TestTLSMismatchIsLogged: a worker dialling the scheduler with TLS where
// it serves plaintext logs the handshake's failure, where it used to wait
// in silence (only "scheduler connection CONNECTING" was seen).
func TestTLSMismatchIsLogged(t *testing.T) {
	addr := grpctest.Listen(t, func(g *grpc.Server) {
		workerpb.RegisterWorkerServiceServer(g, &scriptedScheduler{streams: make(chan workerpb.WorkerService_ConnectServer)})
	})
	conn, err := grpc.NewClient("passthrough:///"+addr, append(DialOptions(),
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true})))...)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	logs := &testlog.Buffer{}
	runClient(t, conn, logs)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(logs.String(), "handshake"); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no handshake error logged in 10 s; the log:\n%s", logs.String())
		}
	}
}
