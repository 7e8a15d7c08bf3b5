package main

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
)

// upEndpoint is the part of `paddock up` that serves clients: the disk
// CAS and action cache, the scheduler, and the one gRPC endpoint serving
// them all, with its metrics, health and reflection.
type upEndpoint struct {
	cas     *storage.DiskBlobStore
	ac      *storage.DiskActionCache
	metered *storage.MeteredBlobStore // cas, as clients reach it
	sched   *scheduler.Scheduler
	srv     *storage.Server
	obs     *observability
	g       *grpc.Server
	lis     net.Listener
	logger  *slog.Logger
}

// startUpEndpoint opens the stores under data and serves them and a
// scheduler on listen.
func startUpEndpoint(data, listen string, casBytes int64, logger *slog.Logger) (*upEndpoint, error) {
	ep := &upEndpoint{obs: newObservability(logger), logger: logger}
	storeDir := filepath.Join(data, "storage")
	var err error
	if ep.cas, err = storage.NewDiskBlobStore(storage.DiskOptions{Dir: storeDir, MaxBytes: casBytes, Logger: logger, ScrubBytesPerSecond: scrubRate}); err != nil {
		return nil, err
	}
	if ep.ac, err = storage.NewDiskActionCache(storeDir, logger); err != nil {
		return nil, err
	}
	if ep.sched, err = scheduler.New(scheduler.Options{Config: scheduler.DefaultConfig(), BlobStore: ep.cas, ActionCache: ep.ac, Logger: logger}); err != nil {
		return nil, err
	}
	ep.metered = storage.NewMeteredBlobStore(ep.cas)
	ep.obs.reg.MustRegister(append(ep.metered.Collectors(), ep.cas.Collector(), ep.sched.Collector())...)
	ep.srv = storage.NewServer(storage.ServerOptions{CAS: ep.metered, AC: ep.ac, Logger: logger, Execution: executionCapabilities()})
	ep.g = ep.obs.newGRPCServer(ep.srv.GRPCServerOptions()...)
	ep.srv.Register(ep.g)
	ep.sched.Register(ep.g)
	ep.obs.finish(ep.g)
	if ep.lis, err = net.Listen("tcp", listen); err != nil {
		ep.sched.Close()
		ep.srv.Close()
		return nil, err
	}
	return ep, nil
}

// serve serves the endpoint until ctx ends, then stops it gracefully. If
// the server fails (its listener broke), it logs and calls stop, so the
// farm stops too; the returned channel delivers serve's error (nil after a
// graceful stop) once it has stopped.
func (ep *upEndpoint) serve(ctx context.Context, stop func()) <-chan error {
	served := make(chan error, 1)
	go func() {
		err := serveUntilDone(ctx, ep.g, ep.lis, ep.obs.health.Shutdown)
		if err != nil {
			ep.logger.Error("gRPC server failed; stopping the farm", "error", err)
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
	got, err := ep.obs.startHTTP(ctx, addr, statusRoutes(ep.sched, ep.metered, ep.ac, ep.logger))
	switch {
	case err == nil:
		return ", status page and metrics on http://" + got + "/", nil
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
	ep.sched.Close()
	ep.srv.Close()
}

// scrubRate is how fast the embedded CAS re-hashes its blobs in the
// background: slow enough to leave the disk to the actions.
const scrubRate = 32 << 20
