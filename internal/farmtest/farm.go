package farmtest

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// Farm is a running in-process farm.
type Farm struct {
	// Addr is the loopback gRPC endpoint of storage and scheduler.
	Addr string
	// Dir holds the farm's data: the disk CAS under storage/cas, laid out
	// as storage.DiskBlobStore lays it out, for tests that damage a blob
	// at rest.
	Dir string
	// Conn is a client connection to Addr.
	Conn *grpc.ClientConn
	// CAS is the farm's disk CAS; nil when partitioned (Options.PartitionOf).
	CAS *storage.DiskBlobStore
	// Blobs is the store the farm serves: CAS, or the partitioned one
	// (give it a context with storage.WithInstance).
	Blobs  storage.BlobStore
	AC     *storage.DiskActionCache
	Runner *ExecRunner
	// Scheduler is the farm's scheduler, for tests of what reads its state.
	Scheduler *scheduler.Scheduler
}

// Options adjust a Farm.
type Options struct {
	// Concurrency of the worker; default 4.
	Concurrency int
	// ServerOptions are added to the farm's gRPC server (TLS credentials,
	// auth interceptors).
	ServerOptions []grpc.ServerOption
	// Dial is the worker's credentials to the farm, and Conn's; plaintext
	// when empty.
	Dial []grpc.DialOption
	// PartitionOf, if set, partitions the CAS by it (an auth policy's), as
	// `paddock up --auth` does: one disk store per partition, and a worker
	// file cache kept apart per partition.
	PartitionOf func(instance string) string
	// TenantLimits are the scheduler's per-tenant limits (an auth
	// policy's TenantLimits).
	TenantLimits map[string]auth.Limits
	// MaxOpenStreams is storage's bound on ByteStream reads and uploads
	// (storage.ServerOptions); 0 means its default.
	MaxOpenStreams int
}

// Start starts a farm whose data lives in t.TempDir(); t.Cleanup stops it.
func Start(t testing.TB, opts Options) *Farm {
	t.Helper()
	if opts.Concurrency == 0 {
		opts.Concurrency = 4
	}
	dir := t.TempDir()
	f := &Farm{Runner: &ExecRunner{}, Dir: dir}
	var err error
	var cas storage.BlobStore
	var local worker.LocalBlobs
	if opts.PartitionOf == nil {
		if f.CAS, err = storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "storage")}); err != nil {
			t.Fatal(err)
		}
		cas, local = f.CAS, f.CAS
	} else {
		cas = storage.NewPartitionedBlobStore(opts.PartitionOf, func(p string) (storage.BlobStore, error) {
			return storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "storage", "partitions", p)})
		})
	}
	if f.AC, err = storage.NewDiskActionCache(filepath.Join(dir, "storage"), nil); err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: cas, ActionCache: f.AC, Logger: slog.New(slog.DiscardHandler),
		TenantLimits: opts.TenantLimits})
	if err != nil {
		t.Fatal(err)
	}
	f.Scheduler, f.Blobs = sched, cas
	srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: f.AC, MaxOpenStreams: opts.MaxOpenStreams, Execution: &repb.ExecutionCapabilities{
		DigestFunction: repb.DigestFunction_SHA256, DigestFunctions: digest.Supported, ExecEnabled: true,
	}})
	g := grpc.NewServer(append(srv.GRPCServerOptions(), opts.ServerOptions...)...)
	srv.Register(g)
	sched.Register(g)
	healthpb.RegisterHealthServer(g, health.NewServer()) // as every role serves it
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }() // returns when the test's cleanup stops g
	f.Addr = lis.Addr().String()
	dial := opts.Dial
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	if f.Conn, err = grpc.NewClient(f.Addr, append(dial,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))...); err != nil {
		t.Fatal(err)
	}
	files, err := worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "worker", "files"), CAS: cas, Local: local, PartitionOf: opts.PartitionOf})
	if err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(worker.Options{
		ID: "farmtest", Concurrency: opts.Concurrency, BuildDir: filepath.Join(dir, "worker", "builds"),
		CAS: cas, AC: f.AC, Files: files, Runner: f.Runner,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := RunWorker(t, context.Background(), w, f.Conn)
	t.Cleanup(func() {
		stop()
		f.Conn.Close()
		sched.Close()
		g.Stop()
		srv.Close()
	})
	return f
}

// RunWorker runs w on conn in the background until stop is called (or ctx
// ends): stop cancels it and waits for Run to return. Run returns before
// that only when it cannot start (workerclient.New), which fails the test.
func RunWorker(tb testing.TB, ctx context.Context, w *worker.Worker, conn grpc.ClientConnInterface) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx, conn); err != nil && ctx.Err() == nil {
			tb.Errorf("worker Run: %v", err)
		}
	}()
	return func() { cancel(); <-done }
}
