package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/internal/grpcerr"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
)

const schedulerUsage = `usage:
  paddock scheduler --listen ADDR --storage ADDR [--config FILE] [--journal-dir DIR] [--print-config]
  paddock scheduler drain --scheduler ADDR --worker ID [--wait]
  paddock scheduler undrain --scheduler ADDR --worker ID

Serves the Execution and Operations APIs (with Capabilities and the storage
at --storage in front) and the worker protocol on --listen.
` + exposureUsage

// runScheduler serves the Execution and Operations APIs and the worker
// protocol, or runs the drain and undrain admin commands.
func runScheduler(ctx context.Context, args []string) error {
	if len(args) > 0 && (args[0] == "drain" || args[0] == "undrain") {
		return runSchedulerDrain(ctx, args[0], args[1:])
	}
	cfg, err := loadSchedulerConfig(args)
	if err != nil {
		return err
	}
	fs, rf := newRoleFlagSet("scheduler", schedulerUsage, "configs/scheduler.yaml")
	registerSchedulerFlags(fs, &cfg)
	var sec serverSecurity
	sec.register(fs)
	var dial dialSecurity // to storage
	dial.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if done, err := finishSchedulerConfig(cfg, rf.configFlags, fs); done {
		return err
	}
	role, err := startServingRole(rf, sec, dial, cfg.Listen, cfg.JournalDir, "journal directory")
	if err != nil {
		return err
	}
	defer role.unlock()
	defer watchStop(ctx, role.logger, "scheduler")()
	logger, serveOpts, policy, dialOpts := role.logger, role.serveOpts, role.policy, role.dialOpts
	cas, ac, storageConn, err := openRemoteStorage(ctx, cfg.Storage, dialOpts)
	if err != nil {
		return err
	}
	defer storageConn.Close()
	obs := newObservability(logger)
	s, err := scheduler.New(scheduler.Options{Config: cfg.Config(), BlobStore: cas, ActionCache: ac, Logger: logger, TenantLimits: policy.TenantLimits(),
		OnJournalFailed: obs.schedulerHealth()})
	if err != nil {
		return err
	}
	defer s.Close()
	g, closeFront, err := schedulerFront(s, cas, ac, serveOpts, obs, cfg.Storage, dialOpts, logger)
	if err != nil {
		return err
	}
	defer closeFront()
	// A broken worker listener stops the role, which then returns its error.
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	broken := make(chan error, 1)
	if cfg.WorkerListen == "" {
		s.RegisterInternal(g)
	} else if err := serveInternal(ctx, s, cfg.WorkerListen, sec, logger, func(err error) { broken <- err; stop() }); err != nil {
		return err
	}
	if rf.httpAddr != "" {
		tlsCfg, err := sec.statusPageTLS(rf.httpAddr, policy != nil, logger)
		if err != nil {
			return err
		}
		if err := rf.startHTTP(ctx, "scheduler", obs, tlsCfg, statusRoutes(s, cas, ac, policy, logger)); err != nil {
			return err
		}
	}
	// Worker streams and Execute streams never end by themselves: end the
	// worker sessions first.
	err = listenAndServe(ctx, "scheduler", g, cfg.Listen, logger, []any{"storage", cfg.Storage}, func() { obs.health.Shutdown(); s.Close() })
	select {
	case werr := <-broken:
		return errors.Join(err, werr)
	default:
		return err
	}
}

// finishSchedulerConfig validates the effective config and, with
// --print-config, prints it; done reports that the command ends here.
func finishSchedulerConfig(cfg configs.Scheduler, cf configFlags, fs *flag.FlagSet) (done bool, err error) {
	if err := cfg.Config().Validate(); err != nil {
		// As the other roles and up say it; the scheduler's message
		// starts with "scheduler:" itself, which main's "paddock
		// scheduler:" repeated.
		return true, fmt.Errorf("config: %w", err)
	}
	if cf.print {
		return true, printConfig(os.Stdout, cfg, nil)
	}
	if cfg.Storage == "" {
		fs.Usage()
		return true, errors.New("--storage is required")
	}
	return false, nil
}

// registerSchedulerFlags adds the scheduler's flags that set its config
// to fs, each writing into cfg.
func registerSchedulerFlags(fs *flag.FlagSet, cfg *configs.Scheduler) {
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "address to serve Execution, Operations and the worker protocol on (listen)")
	fs.StringVar(&cfg.Storage, "storage", cfg.Storage, "address of the REv2 storage (CAS and action cache); required (storage)")
	fs.StringVar(&cfg.WorkerListen, "worker-listen", cfg.WorkerListen, "serve the worker protocol and the admin API on this address instead of --listen, apart from clients (worker_listen)")
	fs.StringVar(&cfg.JournalDir, "journal-dir", cfg.JournalDir, "keep the scheduler's state in a journal in this directory, so a restart keeps its operations (journal_dir)")
	fs.StringVar(&cfg.JournalSync, "journal-sync", cfg.JournalSync, "when a journal record counts as written: fsync or write (journal_sync)")
}

// loadSchedulerConfig is the defaults, then the --config file if any.
func loadSchedulerConfig(args []string) (configs.Scheduler, error) {
	return loadRoleConfig(args, configs.DefaultScheduler)
}

// schedulerFront is the scheduler's client-facing gRPC server. Clients
// point --remote_executor here, and Bazel then uses this one endpoint for
// the cache too: it serves Capabilities, the storage services and the
// Remote Asset API as well, in front of the storage endpoint.
func schedulerFront(s *scheduler.Scheduler, cas storage.BlobStore, ac storage.ActionCache, serveOpts []grpc.ServerOption, obs *observability,
	storageAddr string, dialOpts []grpc.DialOption, logger *slog.Logger) (*grpc.Server, func(), error) {
	front := storage.NewServer(storage.ServerOptions{CAS: cas, AC: ac, Logger: logger, Execution: executionCapabilities()})
	obs.reg.MustRegister(s.Collector())
	g := obs.newGRPCServer(append(front.GRPCServerOptions(), serveOpts...)...)
	front.Register(g)
	// The Remote Asset API is storage's: forwarded there.
	closeAssets, err := registerAssetProxy(g, storageAddr, dialOpts)
	if err != nil {
		front.Close()
		return nil, nil, err
	}
	s.RegisterClient(g)
	obs.finish(g)
	return g, func() { closeAssets(); front.Close() }, nil
}

// adminHint says where the admin API is when the address given does not
// serve it: a scheduler with --worker-listen serves it there, and `paddock
// up` on DATA/scheduler.sock, not on the clients' port.
func adminHint(err error) string {
	if status.Code(err) != codes.Unimplemented {
		return ""
	}
	return " (this address does not serve the admin API: give --scheduler the scheduler's --worker-listen address, or unix://DATA/scheduler.sock for paddock up)"
}

// runSchedulerDrain asks a scheduler to stop giving work to a worker
// (drain; with --wait it waits until the worker is idle, and fails if the
// worker is lost or undrained first), or to give it work again (undrain).
func runSchedulerDrain(ctx context.Context, verb string, args []string) error {
	fs := flag.NewFlagSet("scheduler "+verb, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, schedulerUsage); fs.PrintDefaults() }
	addr := fs.String("scheduler", "localhost:8981", "scheduler address")
	id := fs.String("worker", "", "id of the worker to "+verb+"; required")
	var wait *bool
	if verb == "drain" {
		wait = fs.Bool("wait", false, "return only when the worker runs nothing")
	}
	var dial dialSecurity
	dial.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *id == "" {
		fs.Usage()
		return errors.New("--worker is required")
	}
	dialOpts, err := dial.dialOptions(slog.Default())
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*addr, dialOpts...)
	if err != nil {
		return fmt.Errorf("dial scheduler %s: %w", *addr, err)
	}
	defer conn.Close()
	admin := workerpb.NewAdminServiceClient(conn)
	if verb == "undrain" {
		resp, err := admin.UndrainWorker(ctx, &workerpb.UndrainWorkerRequest{WorkerId: *id})
		if err != nil {
			return fmt.Errorf("undrain worker %q: %w%s", *id, err, adminHint(err))
		}
		fmt.Printf("worker %s undrained, %d action(s) running\n", resp.WorkerId, resp.Running)
		return nil
	}
	resp, err := admin.DrainWorker(ctx, &workerpb.DrainWorkerRequest{WorkerId: *id, Wait: *wait})
	if err != nil {
		return fmt.Errorf("drain worker %q: %w%s", *id, err, adminHint(err))
	}
	if resp.Idle {
		fmt.Printf("worker %s drained and idle\n", resp.WorkerId)
	} else {
		fmt.Printf("worker %s draining, %d action(s) still running\n", resp.WorkerId, resp.Running)
	}
	return nil
}

// newInternalServer is a server of the worker protocol and the admin API
// with opts: with the protocol's flow-control windows (workerpb.Window),
// so that it sends no ping after each message a worker sends, and with
// kept goroutines for its calls.
func newInternalServer(opts ...grpc.ServerOption) *grpc.Server {
	return grpc.NewServer(append(append(opts, workerpb.ServerOptions()...), streamWorkers())...)
}

// serveInternal serves the worker protocol and the admin API on addr, with
// the same TLS and policy as the client listener, until ctx ends; if the
// listener breaks, it logs and calls fail.
func serveInternal(ctx context.Context, s *scheduler.Scheduler, addr string, sec serverSecurity, logger *slog.Logger, fail func(error)) error {
	opts, _, err := sec.serverOptions(addr, logger)
	if err != nil {
		return err
	}
	opts = append(opts, grpcerr.ServerOptions()...)
	opts = append(opts, grpclimit.New(0).ServerOptions(opts...)...)
	g := newInternalServer(opts...)
	s.RegisterInternal(g)
	lis, err := listenTCP(addr)
	if err != nil {
		return err
	}
	logger.Info("scheduler serving workers", "address", lis.Addr().String())
	fmt.Printf("paddock scheduler serving workers on %s\n", lis.Addr())
	go func() {
		<-ctx.Done()
		g.Stop()
	}()
	serveBackground(g, lis, "worker listener", func(err error) {
		logger.Error("worker listener failed; stopping the scheduler", "error", err)
		fail(err)
	})
	return nil
}
