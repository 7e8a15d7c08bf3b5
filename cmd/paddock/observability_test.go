package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/h2test"
	"github.com/paddock-build/paddock/internal/nettest"
)

// TestHTTPListener: /metrics and /healthz over HTTP/1.1, the gRPC health
// service over HTTP/2 without TLS on the same port, /healthz following the
// health status, and a UNIX socket address; the runner child's metrics
// are merged into /metrics without its Go and process families.
func TestHTTPListener(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	child := newObservability(slog.New(slog.DiscardHandler))
	sock := filepath.Join(t.TempDir(), "child.sock")
	if _, err := child.startHTTP(ctx, "unix:"+sock, nil, nil); err != nil {
		t.Fatal(err)
	}
	o := newObservability(slog.New(slog.DiscardHandler))
	o.gather = mergeGatherers{own: o.gather, child: newChildMetrics(sock)}
	addr, err := o.startHTTP(ctx, "127.0.0.1:0", nil, func(mux *http.ServeMux) {
		mux.HandleFunc("GET /extra", func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "extra route") // the client may be gone; it checks what it read
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	// Both serve gRPC health: its RPC counters exist in both processes.
	child.finish(child.newGRPCServer())
	o.finish(o.newGRPCServer())
	fams, err := o.gather.Gather()
	if err != nil {
		t.Errorf("gather merged with the child's metrics: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != "grpc_server_started_total" {
			continue
		}
		n := 0
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if l.GetName() == "grpc_method" && l.GetValue() == "Check" {
					n++
				}
			}
		}
		if n != 1 {
			t.Errorf("%d series of health Check in grpc_server_started_total, want 1", n)
		}
	}
	get := func(path string) (int, string) {
		t.Helper()
		return nettest.HTTPGet(t, "http://"+addr+path)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "go_goroutines") || strings.Count(body, "# TYPE go_goroutines ") != 1 {
		t.Errorf("/metrics: %d, want this process's Go metrics once:\n%.400s", code, body)
	}
	if _, body := get("/metrics"); !strings.Contains(body, "\npaddock_grpc_send_backlog_bytes ") {
		t.Errorf("/metrics has no paddock_grpc_send_backlog_bytes:\n%.400s", body)
	}
	if code, body := get("/extra"); code != 200 || body != "extra route" {
		t.Errorf("/extra: %d %q", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Errorf("/healthz while SERVING: %d, want 200", code)
	}
	o.setServing("", false)
	if code, _ := get("/healthz"); code != 503 {
		t.Errorf("/healthz while NOT_SERVING: %d, want 503", code)
	}
	conn := grpctest.Dial(t, addr)
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health on the HTTP port: %v %v, want NOT_SERVING", resp, err)
	}
}

func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := logFlags{format: "json"}.newLogger(&buf)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hello", "k", 1)
	if !strings.HasPrefix(buf.String(), `{"time":`) || !strings.Contains(buf.String(), `"msg":"hello","k":1`) {
		t.Errorf("json log line %q", buf.String())
	}
	if _, err := (logFlags{format: "xml"}).newLogger(&buf); err == nil || !strings.Contains(err.Error(), "--log-format") {
		t.Errorf("newLogger(xml) = %v, want an error naming the flag", err)
	}
	if _, err := (logFlags{level: "verbose"}).newLogger(&buf); err == nil || !strings.Contains(err.Error(), "--log-level") {
		t.Errorf("newLogger(level verbose) = %v, want an error naming the flag", err)
	}
}

func TestListenHTTPKeepsOtherFiles(t *testing.T) {
	p := filepath.Join(t.TempDir(), "not-a-socket")
	if err := os.WriteFile(p, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	if lis, err := listenHTTP("unix:" + p); err == nil {
		lis.Close()
		t.Fatal("listenHTTP replaced a regular file")
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "data" {
		t.Errorf("the file is gone or changed: %q %v", b, err)
	}
}

// TestHTTPListenerBoundsGRPCCalls: the HTTP port needs no credentials, so
// its gRPC calls in progress (health Watch streams) are
// bounded, and so are a request's headers: idle Watch streams with 1 MB
// of metadata each took a farm to gigabytes.
func TestHTTPListenerBoundsGRPCCalls(t *testing.T) {
	ctx := t.Context()
	addr := startLoopbackHTTP(t, nil)
	// Two connections: the bound is the port's, not a connection's.
	conns := []healthpb.HealthClient{healthpb.NewHealthClient(grpctest.Dial(t, addr)), healthpb.NewHealthClient(grpctest.Dial(t, addr))}
	c := conns[0]
	big := metadata.AppendToOutgoingContext(ctx, "padding", strings.Repeat("x", 64<<10))
	if _, err := c.Check(big, &healthpb.HealthCheckRequest{}); err == nil {
		t.Error("a call with 64 KiB of headers was served")
	}
	for i := range maxHTTPGRPCCalls {
		w, err := conns[i%2].Watch(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			t.Fatalf("Watch %d, within the bound: %v", i, err)
		}
	}
	w, err := c.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	if err == nil {
		t.Fatalf("Watch %d, past the bound, was served", maxHTTPGRPCCalls+1)
	}
	// A probe's Check is still answered: it is not counted.
	if resp, err := conns[1].Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("a Check while Watch streams fill the bound: %v, %v; want SERVING", resp, err)
	}
}

// TestLogLevelDebugShowsAuthDecisions: docs/security.md says every auth
// decision is logged at debug level; --log-level debug shows them, and
// the default (info) does not.
func TestLogLevelDebugShowsAuthDecisions(t *testing.T) {
	dir := t.TempDir()
	policy := filepath.Join(dir, "auth.yaml")
	sum := sha256.Sum256([]byte("token-a"))
	if err := os.WriteFile(policy, []byte("tenants:\n  - name: team-a\n    instance_prefixes: [team-a]\n    identities:\n      - {token_sha256: "+hex.EncodeToString(sum[:])+", permissions: [cas-read]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stderrOf := func(extra ...string) string {
		cmd, addr, stderr := startUntilBanner(t, "paddock storage listening on ", append([]string{"storage", "--listen", "127.0.0.1:0", "--dir", t.TempDir(), "--auth", policy}, extra...)...)
		// No credential: UNAUTHENTICATED, a decision logged at debug.
		_, err := repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr)).FindMissingBlobs(context.Background(), &repb.FindMissingBlobsRequest{InstanceName: "team-a"})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("FindMissingBlobs without a token: %v, want UNAUTHENTICATED", err)
		}
		// An instance name far past its bound is cut in the decision's
		// line (a 3 MiB name made a 3 MB line a call).
		tctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer token-a")
		// Only the decision's log line, checked below, matters, not the answer.
		_, _ = repb.NewContentAddressableStorageClient(grpctest.Dial(t, addr)).FindMissingBlobs(tctx, &repb.FindMissingBlobsRequest{InstanceName: "team-a/" + strings.Repeat("i", 1<<20)})
		stopCleanly(t, cmd, fmt.Sprintf("storage %v", extra), syscall.SIGINT)
		return stderr.String()
	}
	out := stderrOf("--log-level", "debug")
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "auth: unauthenticated") || !strings.Contains(out, "auth: allowed") {
		t.Errorf("--log-level debug: the auth decisions are not logged:\n%.2000s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if len(line) > 4096 {
			t.Errorf("a log line of %d bytes: %.200s…", len(line), line)
		}
	}
	if out := stderrOf(); strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "level=INFO") {
		t.Errorf("the default level logs debug lines, or no info line:\n%s", out)
	}
}

// TestLoopbackListenersRefuseOtherNames: on loopback, /metrics and
// /healthz, and the pprof listener, answer only requests addressed to
// localhost or an IP address: a web page that rebinds its own name to
// 127.0.0.1 read every tenant's instance names (metrics) and goroutine
// stacks (pprof) through the operator's browser.
func TestLoopbackListenersRefuseOtherNames(t *testing.T) {
	addr := startLoopbackHTTP(t, nil)
	pprofAddr, err := startPprof("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"http://" + addr + "/metrics", "http://" + addr + "/healthz", "http://" + pprofAddr + "/debug/pprof/goroutine"} {
		for host, want := range map[string]int{"": http.StatusOK, "rebound.example": http.StatusMisdirectedRequest} {
			req, _ := http.NewRequest("GET", u, nil)
			req.Host = host
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				t.Errorf("%s with Host %q: %d, want %d", u, host, resp.StatusCode, want)
			}
		}
	}
}

// TestSlowRequestBodiesAreCut: a request whose body does not arrive
// within httpBodyTimeout has its connection closed (a POST /login sending
// a byte every 20 s was held for good); a GET is not timed, so a long
// download is not cut.
func TestSlowRequestBodiesAreCut(t *testing.T) {
	old := httpBodyTimeout
	httpBodyTimeout = 300 * time.Millisecond
	defer func() { httpBodyTimeout = old }()
	addr := startLoopbackHTTP(t, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /form", func(w http.ResponseWriter, r *http.Request) {
			if err := r.ParseForm(); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
			}
		})
	})
	if _, err := untilClosed(t, addr, "POST /form HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 60000\r\n\r\na"); err != nil {
		t.Fatalf("the connection with a slow body was not closed: %v", err)
	}
}

// untilClosed sends request on a new connection to addr and reads until
// the server closes it; its 20 s deadline only stops a server that never
// would.
func untilClosed(t *testing.T, addr, request string) ([]byte, error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	if err := c.SetReadDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return io.ReadAll(c)
}

// TestIdleHTTPConnectionsAreClosed: a keep-alive connection idle for
// httpIdleTimeout is closed: 2,600 idle ones, kept two minutes each, held
// every connection the listener admits, and /healthz timed out.
func TestIdleHTTPConnectionsAreClosed(t *testing.T) {
	old := httpIdleTimeout
	httpIdleTimeout = 300 * time.Millisecond
	defer func() { httpIdleTimeout = old }()
	addr := startLoopbackHTTP(t, nil)
	b, err := untilClosed(t, addr, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	if err != nil || !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		t.Fatalf("after one request the idle connection was not closed: %v, read %q", err, b)
	}
}

// startLoopbackHTTP serves a fresh observability's HTTP side, with
// routes, on a loopback port until the test ends, and returns its address.
func startLoopbackHTTP(t *testing.T, routes func(*http.ServeMux)) string {
	t.Helper()
	addr, err := newObservability(slog.New(slog.DiscardHandler)).startHTTP(t.Context(), "127.0.0.1:0", nil, routes)
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// TestHTTPPortRefusesLargeGRPCRequests: a gRPC request on the HTTP port
// is a service name; one past 16 KiB is refused at
// its length prefix. At gRPC's default of 4 MiB, anonymous Checks whose
// request never finished held 4 MiB each (a gigabyte on one connection).
func TestHTTPPortRefusesLargeGRPCRequests(t *testing.T) {
	c := healthpb.NewHealthClient(grpctest.Dial(t, startLoopbackHTTP(t, nil)))
	_, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{Service: strings.Repeat("s", 64<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a Check of 64 KiB: %v, want RESOURCE_EXHAUSTED", err)
	}
	if resp, err := c.Check(t.Context(), &healthpb.HealthCheckRequest{}); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("a probe's Check: %v, %v; want SERVING", resp, err)
	}
}

// blockingCollector holds every collection until release is closed,
// saying on started when one begins.
type blockingCollector struct {
	started chan struct{}
	release chan struct{}
}

func (c blockingCollector) Describe(chan<- *prometheus.Desc) {}

func (c blockingCollector) Collect(chan<- prometheus.Metric) {
	c.started <- struct{}{}
	<-c.release
}

// TestScrapesInProgressAreBounded: /metrics serves at most maxScrapes
// requests at once and answers the next 503 at once. Each holds its
// encoded answer until its client reads it: 250 scrapes on a connection
// that read nothing took the process to 180 MB, for good.
func TestScrapesInProgressAreBounded(t *testing.T) {
	o := newObservability(slog.New(slog.DiscardHandler))
	stuck := blockingCollector{started: make(chan struct{}, maxScrapes), release: make(chan struct{})}
	o.reg.MustRegister(stuck)
	addr, err := o.startHTTP(t.Context(), "127.0.0.1:0", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stuck.release)
	for range maxScrapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := http.Get("http://" + addr + "/metrics"); err == nil {
				resp.Body.Close()
			}
		}()
		<-stuck.started
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("a scrape past %d in progress: %v, want 503 at once", maxScrapes, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("a scrape past %d in progress: %s, want 503", maxScrapes, resp.Status)
	}
}

// TestHTTPPortGRPCRequestsArriveWholeInTime: a gRPC request on the HTTP
// port is read in whole buffers, and ends its call if it has not arrived
// within httpGRPCRequestTimeout. gRPC's HTTP handler transport kept a
// 16 KiB buffer for every read, one byte each when the client sent one
// byte a frame: an anonymous connection of such Checks held gigabytes,
// for as long as it stayed.
func TestHTTPPortGRPCRequestsArriveWholeInTime(t *testing.T) {
	old := httpGRPCRequestTimeout
	httpGRPCRequestTimeout = 300 * time.Millisecond
	defer func() { httpGRPCRequestTimeout = old }()
	c := h2test.Dial(t, startLoopbackHTTP(t, nil))
	msg := h2test.Message(&healthpb.HealthCheckRequest{Service: strings.Repeat("s", 1000)}, 1005)
	id := c.Call(t, healthCheckMethod, msg[:5], false)
	for _, b := range msg[5:200] { // a byte a frame, and never the rest
		c.Data(t, id, []byte{b}, false)
	}
	ended := make(chan bool, 1)
	go func() { ended <- c.Ended(id) }()
	select {
	case ok := <-ended:
		if !ok {
			t.Fatal("the connection closed instead of the call ending")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a Check whose request stopped arriving was still open after 30 s")
	}
}

// TestFullReadsFillTheirBuffer: a body arriving a byte at a time is read
// in whole buffers, and its last, short one ends with io.EOF.
func TestFullReadsFillTheirBuffer(t *testing.T) {
	body := fullReads{io.NopCloser(iotest.OneByteReader(strings.NewReader(strings.Repeat("b", 40))))}
	p := make([]byte, 16)
	for i, want := range []int{16, 16, 8} {
		n, err := body.Read(p)
		if n != want || (err != nil) != (i == 2) {
			t.Fatalf("read %d: %d bytes, %v; want %d", i, n, err, want)
		}
	}
}
