package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/hostguard"
	"github.com/paddock-build/paddock/internal/unixsock"
)

// httpListenUsage is the help of --http-listen, shared by the roles.
const httpListenUsage = "serve Prometheus metrics (/metrics), health (/healthz, and gRPC health over h2c) and, for the scheduler, the status page (with --auth only for admin identities; HTTPS with --tls-cert) on this address (host:port, or a UNIX socket path); off when empty"

// observability is what every role serves for its operators: one
// Prometheus registry (Go runtime, process, per-RPC gRPC metrics and the
// role's own collectors), the gRPC health service, and server reflection
// on its gRPC listeners (not on the HTTP port).
// A role builds one, adds its collectors to reg, builds its gRPC servers
// with newGRPCServer, calls finish on each after registering its services,
// and serves the HTTP side with startHTTP.
type observability struct {
	reg    *prometheus.Registry
	rpc    *grpcprom.ServerMetrics
	health *health.Server
	// gather is what /metrics serves: reg, or reg merged with more (`up`
	// adds its runner child's metrics).
	gather prometheus.Gatherer
	logger *slog.Logger
}

func newObservability(logger *slog.Logger) *observability {
	o := &observability{
		reg: prometheus.NewRegistry(),
		rpc: grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
			grpcprom.WithHistogramBuckets(prometheus.ExponentialBuckets(0.0005, 4, 10)))),
		health: health.NewServer(),
		logger: logger,
	}
	sendBacklog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "paddock_grpc_send_backlog_bytes",
		Help: "Bytes of gRPC responses queued for clients and not yet written to their connections (see grpclimit.ConnLimits).",
	}, func() float64 { return float64(grpclimit.SendBacklog()) })
	o.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), o.rpc, sendBacklog)
	// Calls the auth policy refused: they never reach the per-RPC
	// metrics (most are refused in the tap, before any interceptor).
	for reason := range auth.Refusals() {
		o.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "paddock_auth_refused_calls_total",
			Help:        "Calls the auth policy refused, by reason: unauthenticated, permission_denied, invalid_argument (an instance name), tenant_share (the tenant's calls in progress at its share).",
			ConstLabels: prometheus.Labels{"reason": reason},
		}, func() float64 { return float64(auth.Refusals()[reason]) }))
	}
	o.gather = o.reg
	return o
}

// httpBodyTimeout bounds the time an HTTP request's body may take to
// arrive (the status page's forms hold 64 KiB at most). A variable for
// the tests.
var httpBodyTimeout = 30 * time.Second

// timedBody bounds the time r's body may take to arrive (not gRPC's,
// whose health Watch streams last): a POST /login sending a byte every
// 20 s held its connection for good, and 2,600 of them held every
// connection the listener admits, /healthz's included. The deadline is
// lifted once the body has been read: on HTTP/1 it is the connection's,
// and one that passed later, in a long handler, would cancel the request.
func timedBody(w http.ResponseWriter, r *http.Request) *http.Request {
	if r.ContentLength == 0 {
		return r // no body (a GET)
	}
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(httpBodyTimeout)) != nil {
		return r
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, lift: func() { _ = rc.SetReadDeadline(time.Time{}) }}
	return r
}

// deadlineBody lifts its read deadline at its end.
type deadlineBody struct {
	io.ReadCloser
	lift func()
	once sync.Once
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if errors.Is(err, io.EOF) {
		b.once.Do(b.lift)
	}
	return n, err
}

// httpIdleTimeout is how long an HTTP connection may stay idle between
// requests (a variable for the tests).
var httpIdleTimeout = 10 * time.Second

// maxHTTPGRPCCalls bounds the gRPC calls in progress on the HTTP port,
// over all its connections: health Watch streams need a handful. A health Check is not counted: it answers at once, and a
// probe's Check was refused while one anonymous connection held 100
// Watch streams.
const maxHTTPGRPCCalls = 100

// httpGRPCMaxRecv bounds a gRPC request message on the HTTP port.
const httpGRPCMaxRecv = 16 << 10

// maxScrapes bounds the /metrics requests in progress; past it a scrape
// is answered 503 at once.
const maxScrapes = 8

// httpMaxStreams bounds the concurrent streams of an HTTP/2 connection on
// the HTTP port.
const httpMaxStreams = 64

// healthCheckMethod is the path of the unary health Check.
const healthCheckMethod = "/grpc.health.v1.Health/Check"

// newGRPCServer returns a gRPC server with opts, the per-RPC metrics
// interceptors, clean error messages (grpcerr) and a bound on the calls it
// runs at once (grpclimit). Call finish once its services are registered.
func (o *observability) newGRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.ChainUnaryInterceptor(o.rpc.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(o.rpc.StreamServerInterceptor()))
	opts = append(opts, grpcerr.ServerOptions()...)
	opts = append(opts, grpclimit.New(0).ServerOptions(opts...)...)
	return grpc.NewServer(append(opts, streamWorkers())...)
}

// streamWorkers has a gRPC server run its calls on goroutines it keeps,
// instead of a new goroutine per call: a kept goroutine's stack has already
// grown to a handler's depth, which a new one grows again by copying (a
// twelfth of `paddock up`'s CPU under a build, before). Calls beyond the
// workers, such as long-lived Execute and worker streams, get goroutines of
// their own as before; the workers only make the common case cheaper.
func streamWorkers() grpc.ServerOption {
	return grpc.NumStreamWorkers(numStreamWorkers)
}

// numStreamWorkers is how many kept goroutines a gRPC server has: enough for
// the short calls of a busy farm beside its waiting streams, and a few
// kilobytes each while idle.
const numStreamWorkers = 32

// finish adds health and reflection to g and sets every service's RPC
// counters to zero, so that they appear in /metrics before the first call.
func (o *observability) finish(g *grpc.Server) {
	healthpb.RegisterHealthServer(g, o.health)
	reflection.Register(g)
	o.rpc.InitializeMetrics(g)
}

// setServing sets the health of service ("" is the whole role).
func (o *observability) setServing(service string, ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	o.health.SetServingStatus(service, st)
}

// schedulerHealthService is the gRPC health service name that follows
// the scheduler's ability to take work, in its role and in `paddock up`.
const schedulerHealthService = "paddock.scheduler"

// schedulerHealth sets the scheduler's health service SERVING and returns
// what the scheduler calls when its journal fails
// (scheduler.Options.OnJournalFailed). From then on every Execute is
// refused until a restart, so the scheduler's service and the whole
// role's ("") turn NOT_SERVING: an orchestrator's probe then restarts it
// (the scheduler logs the cause). Nothing turns them back: a journal is
// not recovered without a restart.
func (o *observability) schedulerHealth() func(error) {
	o.setServing(schedulerHealthService, true)
	return func(error) {
		o.setServing(schedulerHealthService, false)
		o.setServing("", false)
	}
}

// startHTTP serves /metrics, /healthz and the gRPC health service (HTTP/2
// without TLS, for clients such as grpc_health_probe) on addr, plus
// whatever routes adds, until ctx ends. addr is host:port or, when it
// starts with "/" or "unix:", a UNIX socket path (`paddock up` reaches its
// runner child's metrics that way). With tlsCfg it serves HTTPS instead
// (HTTP/1.1 and HTTP/2): the scheduler's status page takes credentials.
// It returns the address it listens on.
func (o *observability) startHTTP(ctx context.Context, addr string, tlsCfg *tls.Config, routes func(*http.ServeMux)) (string, error) {
	lis, err := listenHTTP(addr)
	if err != nil {
		return "", fmt.Errorf("--http-listen: %w", err)
	}
	mux := http.NewServeMux()
	// On loopback, what needs no credentials answers only to localhost
	// and IP addresses (hostguard): a web page rebinding its name to
	// 127.0.0.1 read every tenant's instance names from /metrics.
	open := func(h http.Handler) http.Handler { return h }
	if hostguard.Loopback(addr) {
		open = hostguard.Handler
	}
	// Scrapes in progress are bounded: each holds its encoded answer
	// (about 600 KB) until the client reads it, and 250 on a connection
	// whose client read nothing took the process to 180 MB, for good.
	mux.Handle("GET /metrics", open(promhttp.HandlerFor(o.gather, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError, MaxRequestsInFlight: maxScrapes})))
	mux.Handle("GET /healthz", open(http.HandlerFunc(o.healthz)))
	if routes != nil {
		routes(mux)
	}
	// The gRPC health service on the same port: the worker has no gRPC
	// listener of its own, and probes then need one address per role.
	// Its requests are a service name: a request
	// past httpGRPCMaxRecv is refused at its length prefix, never held.
	// At gRPC's default of 4 MiB, Checks whose request never finished
	// (a probe's Check is not counted, below) held 4 MiB each: one
	// anonymous connection took the process to a gigabyte, for good.
	hg := grpc.NewServer(grpc.MaxRecvMsgSize(httpGRPCMaxRecv))
	healthpb.RegisterHealthServer(hg, o.health)
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	if tlsCfg != nil {
		protocols.SetHTTP2(true)
	} else {
		protocols.SetUnencryptedHTTP2(true)
	}
	srv := &http.Server{
		Handler: grpcBeside(hg, mux),
		// A request's headers, as on the gRPC port (grpclimit).
		MaxHeaderBytes:    grpclimit.MaxHeaderBytes,
		Protocols:         &protocols,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 10 * time.Second,
		// Idle keep-alive connections are closed soon: the listener
		// accepts a bounded number (listenTCP), and 2,600 idle ones,
		// kept two minutes each, left no room for /healthz. A scraper
		// every 15 s or more opens a connection a scrape.
		IdleTimeout: httpIdleTimeout,
		// Streams of one HTTP/2 connection: Go's default is 250, each
		// able to hold a request being read or an answer not yet read.
		// and each stream's body buffered at most 64 KiB (the status
		// page's forms), not Go's 1 MiB.
		HTTP2:    &http.HTTP2Config{MaxConcurrentStreams: httpMaxStreams, MaxReceiveBufferPerStream: 64 << 10},
		ErrorLog: slog.NewLogLogger(o.logger.Handler(), slog.LevelWarn),
	}
	go func() {
		serve := srv.Serve
		if tlsCfg != nil {
			serve = func(l net.Listener) error { return srv.ServeTLS(l, "", "") }
		}
		if err := serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.logger.Warn("http listener stopped", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if srv.Shutdown(sctx) != nil { // requests still running after 2 s
			_ = srv.Close() // cuts them; its error is the listener's, already closed
		}
		hg.Stop()
	}()
	got := lis.Addr().String()
	o.logger.Info("http listening", "addr", got)
	return got, nil
}

// grpcBeside sends HTTP/2 gRPC requests to hg and the rest to mux.
func grpcBeside(hg *grpc.Server, mux *http.ServeMux) http.Handler {
	var grpcCalls atomic.Int64
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor == 2 && strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			// This port needs no credentials: its gRPC calls (health
			// probes) are bounded, or idle Watch streams would hold the
			// process's memory, and their requests are read whole.
			r = wholeRequest(w, r)
			if r.URL.Path == healthCheckMethod {
				hg.ServeHTTP(w, r)
				return
			}
			if grpcCalls.Add(1) > maxHTTPGRPCCalls {
				grpcCalls.Add(-1)
				http.Error(w, "too many gRPC calls in progress on this port", http.StatusTooManyRequests)
				return
			}
			defer grpcCalls.Add(-1)
			hg.ServeHTTP(w, r)
			return
		}
		mux.ServeHTTP(w, timedBody(w, r))
	})
}

// healthz answers 200 while the role is SERVING and 503 otherwise, for
// probes that speak only HTTP.
func (o *observability) healthz(w http.ResponseWriter, r *http.Request) {
	resp, err := o.health.Check(r.Context(), &healthpb.HealthCheckRequest{Service: r.URL.Query().Get("service")})
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		http.Error(w, resp.Status.String(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, resp.Status.String())
}

// listenHTTP listens on a TCP address, or on a UNIX socket (mode 0600,
// replacing a stale socket, never another file) for a path.
func listenHTTP(addr string) (net.Listener, error) {
	path, isUnix := strings.CutPrefix(addr, "unix:")
	if !isUnix && !strings.HasPrefix(addr, "/") {
		return listenTCP(addr)
	}
	if !isUnix {
		path = addr
	}
	if err := unixsock.RemoveStale(path); err != nil {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}
