package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb/workerclient"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/nettest"
	"github.com/paddock-build/paddock/internal/testdisk"
)

// startServing runs the binary with args and returns the addresses it
// prints on its "http listening on" and "listening on" lines, in that
// order.
func startServing(t *testing.T, args ...string) (httpAddr, grpcAddr string) {
	t.Helper()
	_, stdout := launch(t, args...)
	found := make(chan [2]string, 1)
	go func() {
		var addrs [2]string
		sc := bufio.NewScanner(stdout)
		for addrs[1] == "" && sc.Scan() {
			if _, a, ok := strings.Cut(sc.Text(), " http listening on "); ok {
				addrs[0] = a
			} else if _, a, ok := strings.Cut(sc.Text(), " listening on "); ok {
				addrs[1] = a
			}
		}
		found <- addrs
		_, _ = io.Copy(io.Discard, stdout) // the rest, until the child ends (Wait may close the pipe first)
	}()
	select {
	case addrs := <-found:
		if addrs[0] == "" || addrs[1] == "" {
			t.Fatalf("%v printed addresses %q", args, addrs)
		}
		return addrs[0], addrs[1]
	case <-time.After(60 * time.Second):
		t.Fatalf("%v did not start serving within a minute", args)
	}
	return "", ""
}

// `paddock scheduler` whose journal's disk fills up refuses new work
// until restarted; its health says so, for an orchestrator to restart it:
// /healthz answers 503, gRPC health is NOT_SERVING for the role ("") and
// for paddock.scheduler on both ports, and /metrics has
// paddock_scheduler_journal_failed 1.
func TestSchedulerCommandWithAFailedJournalIsNotServing(t *testing.T) {
	dir := t.TempDir()
	journal := testdisk.Mount(t, 64<<10, 0) // unmounted after the processes are killed
	storageAddr, _ := start(t, "storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
	httpAddr, schedAddr := startServing(t, "scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr,
		"--journal-dir", journal, "--http-listen", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	checkSchedulerHealth(ctx, t, httpAddr, schedAddr, healthpb.HealthCheckResponse_SERVING, 200, "0")

	storage, exec := grpctest.Dial(t, storageAddr), repb.NewExecutionClient(grpctest.Dial(t, schedAddr))
	var err error
	for i := 0; i < 2000 && err == nil; i++ {
		ad := farmtest.UploadAction(t, storage, "", nil, "/bin/echo", fmt.Sprint(i))
		var s repb.Execution_ExecuteClient
		if s, err = exec.Execute(ctx, &repb.ExecuteRequest{ActionDigest: ad.Proto()}); err == nil {
			_, err = s.Recv()
		}
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Executes until the journal's disk filled up: %v, want UNAVAILABLE", err)
	}
	// The health follows the refusal at once, but from another goroutine.
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if code, _ := nettest.HTTPGet(t, "http://"+httpAddr+"/healthz"); code != 200 {
			break
		}
	}
	checkSchedulerHealth(ctx, t, httpAddr, schedAddr, healthpb.HealthCheckResponse_NOT_SERVING, 503, "1")
}

// checkSchedulerHealth checks the scheduler's health services on both its
// ports, /healthz and the journal gauge.
func checkSchedulerHealth(ctx context.Context, t *testing.T, httpAddr, grpcAddr string, want healthpb.HealthCheckResponse_ServingStatus, wantCode int, wantGauge string) {
	t.Helper()
	for _, addr := range []string{httpAddr, grpcAddr} {
		client := healthpb.NewHealthClient(grpctest.Dial(t, addr))
		for _, service := range []string{"", schedulerHealthService} {
			resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{Service: service})
			if err != nil || resp.Status != want {
				t.Errorf("health of %q on %s: %v %v, want %v", service, addr, resp, err, want)
			}
		}
	}
	if code, _ := nettest.HTTPGet(t, "http://"+httpAddr+"/healthz"); code != wantCode {
		t.Errorf("/healthz: %d, want %d", code, wantCode)
	}
	if _, body := nettest.HTTPGet(t, "http://"+httpAddr+"/metrics"); !strings.Contains(body, "\npaddock_scheduler_journal_failed "+wantGauge+"\n") {
		t.Errorf("/metrics has no paddock_scheduler_journal_failed %s:\n%s", wantGauge, grepLines(body, "journal"))
	}
}

// grepLines is the lines of text that contain word.
func grepLines(text, word string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// pingCounter is a listener whose connections count the HTTP/2 PING
// frames (not their acknowledgements) the server writes.
type pingCounter struct {
	net.Listener
	pings atomic.Int64
}

func (l *pingCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &pingCountingConn{Conn: c, pings: &l.pings}, nil
}

// pingCountingConn reads the frames in what the server writes: a 9-byte
// header (24-bit length, type, flags, stream) and the payload.
type pingCountingConn struct {
	net.Conn
	pings *atomic.Int64
	buf   []byte
}

func (c *pingCountingConn) Write(p []byte) (int, error) {
	c.buf = append(c.buf, p...)
	for len(c.buf) >= 9 {
		n := int(c.buf[0])<<16 | int(c.buf[1])<<8 | int(c.buf[2])
		if len(c.buf) < 9+n {
			break
		}
		if typ, flags := c.buf[3], c.buf[4]; typ == 0x6 && flags&0x1 == 0 { // PING, not an ACK
			c.pings.Add(1)
		}
		c.buf = c.buf[9+n:]
	}
	return c.Conn.Write(p)
}

// TestWorkerProtocolServerSendsNoPingPerMessage: the scheduler's servers
// of the worker protocol (up's local socket, the scheduler role's
// --worker-listen) have fixed flow-control windows, so a message from a
// worker is not answered with a bandwidth-delay ping besides the reply:
// none over 50 calls. gRPC's default, measured here too so that the count
// is seen to work, sends one for nearly every call.
func TestWorkerProtocolServerSendsNoPingPerMessage(t *testing.T) {
	for _, tc := range []struct {
		name     string
		server   func() *grpc.Server
		wantNone bool
	}{
		{"worker protocol server", func() *grpc.Server { return newInternalServer() }, true},
		{"gRPC's default", func() *grpc.Server { return grpc.NewServer() }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			counted := &pingCounter{Listener: lis}
			g := tc.server()
			healthpb.RegisterHealthServer(g, health.NewServer())
			go func() { _ = g.Serve(counted) }() // ends with Stop
			t.Cleanup(g.Stop)
			conn, err := grpc.NewClient(lis.Addr().String(), append(workerclient.DialOptions(), grpc.WithTransportCredentials(insecure.NewCredentials()))...)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			client := healthpb.NewHealthClient(conn)
			for range 50 {
				if _, err := client.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
					t.Fatal(err)
				}
			}
			conn.Close() // the server has written all it answers with
			if got := counted.pings.Load(); tc.wantNone && got != 0 {
				t.Errorf("the server sent %d pings over 50 calls; want none", got)
			} else if !tc.wantNone && got == 0 {
				t.Errorf("gRPC's default sent no ping over 50 calls: the count sees none")
			}
		})
	}
}
