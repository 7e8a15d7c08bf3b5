package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// upEndpoint is the part of `paddock up` that serves clients: the disk
// CAS and action cache, the scheduler, and the one gRPC endpoint serving
// them all, with its metrics, health and reflection.
type upEndpoint struct {
	cas   storage.BlobStore // the disk CAS, or its tenant partitions
	local worker.LocalBlobs // the disk CAS whose files the worker links; nil when partitioned
	adopt worker.Adopter    // the same, when it keeps the worker's outputs by a hard link
	ac    storage.ActionCache
	// casBytes is the most the CAS holds when it is on this disk; 0:
	// unknown (a remote backend).
	casBytes int64
	// closeStores releases the backend's connections.
	closeStores func()
	metered     *storage.MeteredBlobStore // cas, as clients reach it
	sched       *scheduler.Scheduler
	srv         *storage.Server
	obs         *observability
	g           *grpc.Server
	lis         net.Listener
	logger      *slog.Logger
	// gi serves the worker protocol and admin API on a local socket only:
	// gilis.
	gi     *grpc.Server
	gilis  net.Listener
	policy *auth.Policy // nil: every call allowed
	sec    serverSecurity
}

// startUpEndpoint opens the stores cfg.Storage names (by default the disk
// under DATA/storage) and serves them, the Remote Asset API and a
// scheduler on cfg.Storage.Listen. sec gives the TLS and auth of the
// client listener; with a policy the CAS is partitioned by tenant.
func startUpEndpoint(cfg configs.Up, sec serverSecurity, logger *slog.Logger) (*upEndpoint, error) {
	ep := &upEndpoint{obs: newObservability(logger), logger: logger, sec: sec}
	listen := cfg.Storage.Listen
	serveOpts, policy, err := sec.serverOptions(listen, logger)
	if err != nil {
		return nil, err
	}
	ep.policy = policy
	b, err := storageBackend(cfg.Storage)
	if err != nil {
		return nil, err
	}
	// Remote backends are dialled as the storage role does; up has no
	// client TLS flags of its own, so they are plaintext.
	o, err := openBackend(context.Background(), b, "backend", backendDeps{policy: policy, logger: logger})
	if err != nil {
		return nil, err
	}
	ep.cas, ep.local, ep.adopt, ep.ac, ep.closeStores = o.cas, o.local, o.adopt, o.ac, o.close
	ep.casBytes = o.maxBlobBytes
	// The scheduler's journal (scheduler.journal_dir, DATA/scheduler by
	// default) keeps queued and running work across a restart of up.
	if ep.sched, err = scheduler.New(scheduler.Options{Config: cfg.Scheduler.Config(), BlobStore: ep.cas, ActionCache: ep.ac, Logger: logger,
		TenantLimits: policy.TenantLimits(), OnJournalFailed: ep.obs.schedulerHealth()}); err != nil {
		return nil, err
	}
	ep.metered = storage.NewMeteredBlobStore(ep.cas)
	ep.obs.reg.MustRegister(append(append(ep.metered.Collectors(), ep.sched.Collector()), o.collectors...)...)
	ep.srv = storage.NewServer(storage.ServerOptions{
		CAS: ep.metered, AC: ep.ac, Logger: logger, Execution: executionCapabilities(),
		MaxBatchTotalSizeBytes: int64(cfg.Storage.MaxBatchTotalSizeBytes),
		MaxInlineBytes:         int64(cfg.Storage.MaxInlineBytes),
		MaxCASBlobBytes:        o.maxBlobBytes,
		UploadIdleTimeout:      cfg.Storage.UploadIdleTimeout,
		SkipCompletenessChecks: !cfg.Storage.CheckCompleteness,
	})
	// DATA/assets, not storage.dir/assets as in the storage role: where
	// up has always kept them.
	assets, err := newAssetServer(ep.metered, filepath.Join(cfg.Data, "assets"), cfg.Storage.Assets, logger)
	if err != nil {
		ep.sched.Close()
		return nil, err
	}
	ep.g = ep.obs.newGRPCServer(append(ep.srv.GRPCServerOptions(), serveOpts...)...)
	ep.srv.Register(ep.g)
	assets.Register(ep.g)
	ep.sched.RegisterClient(ep.g)
	ep.obs.finish(ep.g)
	if ep.gi, ep.gilis, err = localInternal(ep.sched, filepath.Join(cfg.Data, "scheduler.sock")); err != nil {
		ep.sched.Close()
		ep.srv.Close()
		return nil, err
	}
	if ep.lis, err = listenTCP(listen); err != nil {
		ep.sched.Close()
		ep.srv.Close()
		return nil, err
	}
	return ep, nil
}

// serve serves the endpoint until ctx ends, then stops it gracefully. If
// either server fails (its listener broke: the TCP port's, or the worker
// socket's), it logs and calls stop, so the farm stops too; the returned
// channel delivers that error (nil after a graceful stop) once it has
// stopped.
func (ep *upEndpoint) serve(ctx context.Context, stop func()) <-chan error {
	served := make(chan error, 1)
	internal := make(chan error, 1)
	serveBackground(ep.gi, ep.gilis, "worker socket", func(err error) {
		ep.logger.Error("worker socket failed; stopping the farm", "error", err)
		internal <- err
		stop()
	})
	go func() {
		// The scheduler stops first, as in the scheduler role: that ends
		// its clients' Execute and WaitExecution streams (UNAVAILABLE:
		// they wait on the restarted farm), which the graceful stop would
		// otherwise wait out.
		err := serveUntilDone(ctx, ep.g, ep.lis, func() { ep.obs.health.Shutdown(); ep.sched.Close() })
		if err != nil {
			err = fmt.Errorf("%s: %w", ep.lis.Addr(), err)
			ep.logger.Error("gRPC server failed; stopping the farm", "error", err)
		} else {
			select {
			case err = <-internal: // it stopped the farm
			default:
			}
		}
		stop()
		served <- err
	}()
	return served
}

// startHTTP serves metrics and the status page on addr, and returns what
// the ready line says about it. When the default address is taken
// (another farm on this machine; explicit false), the farm runs without.
func (ep *upEndpoint) startHTTP(ctx context.Context, addr string, explicit bool) (string, error) {
	if addr == "" {
		return "", nil
	}
	tlsCfg, err := ep.sec.statusPageTLS(addr, ep.policy != nil, ep.logger)
	if err != nil {
		return "", err
	}
	got, err := ep.obs.startHTTP(ctx, addr, tlsCfg, statusRoutes(ep.sched, ep.metered, ep.ac, ep.policy, ep.logger))
	scheme := "http://"
	if tlsCfg != nil {
		scheme = "https://"
	}
	switch {
	case err == nil:
		return ", status page and metrics on " + scheme + got + "/", nil
	case explicit:
		return "", err
	}
	ep.logger.Warn("no status page or metrics", "error", err)
	return "", nil
}

// close releases what the endpoint holds once serving has ended (or never
// began): the gRPC server, the scheduler's worker sessions and the storage
// server's uploads.
func (ep *upEndpoint) close() {
	ep.g.Stop()
	ep.gi.Stop()
	ep.sched.Close()
	ep.srv.Close()
	ep.closeStores()
}

// scrubRate is how fast the embedded CAS re-hashes its blobs in the
// background: slow enough to leave the disk to the actions.
const scrubRate = 32 << 20

// localInternal is the server of the worker protocol and the admin API,
// and its listener, on the UNIX socket path only: no client of the TCP
// port, with or without credentials, can register a worker or drain one.
// serve serves it.
func localInternal(sched *scheduler.Scheduler, path string) (*grpc.Server, net.Listener, error) {
	lis, err := listenUnix(path)
	if err != nil {
		return nil, nil, err
	}
	g := newInternalServer(grpclimit.KeepaliveOptions()...) // the worker's pings
	sched.RegisterInternal(g)
	return g, lis, nil
}

// listenUnix listens on a UNIX socket at path that only this user (root)
// may connect to, replacing a stale socket left by a crash.
func listenUnix(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// Connecting needs write permission, which the umask already denies
	// to others; 0600 makes it explicit. (Not a process-wide umask change,
	// which would race with the CAS creating files.)
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, err
	}
	return lis, nil
}

// tenantOf names the tenant owning an action's instance name for the
// runner, which pulls images with that tenant's registry credentials; nil
// (no tenant) without a policy.
func tenantOf(policy *auth.Policy) func(string) string {
	if policy == nil {
		return nil
	}
	return policy.TenantOf
}

// partitionOf is how the worker of `paddock up` keeps its file cache apart
// per CAS partition; nil (one partition) without a policy.
func partitionOf(policy *auth.Policy) func(string) string {
	if policy == nil {
		return nil
	}
	return policy.PartitionOf
}
