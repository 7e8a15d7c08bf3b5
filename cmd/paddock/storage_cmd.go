package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/internal/dirlock"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

const storageUsage = `usage: paddock storage [--config FILE] [--listen ADDR] [--dir DIR] [flags]

Serves the CAS, the action cache, ByteStream, Capabilities and the Remote
Asset API on ADDR, its data under DIR (on disk, or another backend: see
configs/storage.yaml).
` + exposureUsage

func runStorage(ctx context.Context, args []string) error {
	cfg, err := loadRoleConfig(args, configs.DefaultStorage)
	if err != nil {
		return err
	}
	fs, rf := newRoleFlagSet("storage", storageUsage, "configs/storage.yaml")
	fs.StringVar(&cfg.Listen, "listen", cfg.Listen, "gRPC address for CAS, Action Cache, ByteStream, Capabilities and the Remote Asset API (listen)")
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "data directory: the disk backend's blobs and the asset records (dir)")
	var sec serverSecurity
	sec.register(fs)
	var dial dialSecurity // to a remote CAS
	dial.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if b, err := storageBackend(cfg); err != nil {
		return err
	} else if err := b.Validate("backend"); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if rf.print {
		return printConfig(os.Stdout, cfg, nil)
	}
	role, err := startServingRole(rf, sec, dial, cfg.Listen, cfg.Dir, "storage directory")
	if err != nil {
		return err
	}
	defer role.unlock()
	defer watchStop(ctx, role.logger, "storage")()
	logger, serveOpts, policy, dialOpts := role.logger, role.serveOpts, role.policy, role.dialOpts
	opened, err := openStorage(ctx, cfg, dialOpts, policy, logger)
	if err != nil {
		return err
	}
	defer opened.close()
	cas, ac := opened.cas, opened.ac
	obs := newObservability(logger)
	metered := storage.NewMeteredBlobStore(cas)
	obs.reg.MustRegister(append(metered.Collectors(), opened.collectors...)...)
	srv := storage.NewServer(storage.ServerOptions{
		CAS: metered, AC: ac,
		MaxBatchTotalSizeBytes: int64(cfg.MaxBatchTotalSizeBytes),
		MaxInlineBytes:         int64(cfg.MaxInlineBytes),
		MaxCASBlobBytes:        opened.maxBlobBytes,
		UploadIdleTimeout:      cfg.UploadIdleTimeout,
		Logger:                 logger,
		SkipCompletenessChecks: !cfg.CheckCompleteness,
	})
	defer srv.Close()
	assets, err := newAssetServer(metered, filepath.Join(cfg.Dir, "assets"), cfg.Assets, logger)
	if err != nil {
		return err
	}
	g := obs.newGRPCServer(append(srv.GRPCServerOptions(), serveOpts...)...)
	srv.Register(g)
	assets.Register(g)
	obs.finish(g)
	if err := rf.startHTTP(ctx, "storage", obs, nil, nil); err != nil {
		return err
	}
	return listenAndServe(ctx, "storage", g, cfg.Listen, logger, []any{"dir", cfg.Dir}, obs.health.Shutdown)
}

// openStorage opens the backend cfg names (see storageBackend).
func openStorage(ctx context.Context, cfg configs.Storage, dial []grpc.DialOption, policy *auth.Policy, logger *slog.Logger) (openedBackend, error) {
	b, err := storageBackend(cfg)
	if err != nil {
		return openedBackend{}, err
	}
	return openBackend(ctx, b, "backend", backendDeps{dial: dial, policy: policy, logger: logger})
}

// openRemoteStorage connects to the REv2 storage endpoint addr and returns
// the CAS and action cache over it, and a function that closes the
// connection. The scheduler and worker roles use it.
func openRemoteStorage(ctx context.Context, addr string, dial []grpc.DialOption) (storage.BlobStore, storage.ActionCache, *grpc.ClientConn, error) {
	conn, err := dialStorage(addr, dial)
	if err != nil {
		return nil, nil, nil, err
	}
	return storage.NewRemoteBlobStore(conn, storage.RemoteOptions{ForwardInstance: true}), storage.NewRemoteActionCache(conn), conn, nil
}

// lockRoleDir makes dir and locks it for this process (internal/dirlock):
// a second role on the same directory is refused before it opens anything
// there. An empty dir (none configured) locks nothing.
func lockRoleDir(dir, what string) (release func(), err error) {
	if dir == "" {
		return func() {}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, dir, err)
	}
	return dirlock.Lock(dir, what)
}

// dialStorage connects to addr with dial's credentials (plaintext when
// empty), with storageKeepalive.
func dialStorage(addr string, dial []grpc.DialOption) (*grpc.ClientConn, error) {
	return dialStorageKeepalive(addr, dial, storageKeepalive())
}

// storageKeepalive is how the roles' connections to storage notice a
// storage that stopped answering without closing its connections (a
// SIGSTOPped process, a network partition): without pings, a call waited
// for its client's deadline (one read, 2m33s), and every call sent on the
// connection meanwhile with it. A call that has read nothing for Time
// sends a ping, and with no answer within Timeout the connection is
// closed and its calls fail UNAVAILABLE, which clients retry: at most 40 s.
//
// Time stays well above grpclimit.MinPingInterval, the farm's servers'
// enforcement policy, or they would end the connection with GOAWAY
// too_many_pings (TestStorageKeepaliveFitsTheFarmsPolicy). No pings
// without calls: a `remote` backend may be any REv2 cache, and gRPC's
// default policy, which those often keep, counts those as strikes and
// ends the connection. A call on a connection idle for longer than Time
// pings at once, so it still notices a dead one within Timeout.
func storageKeepalive() keepalive.ClientParameters {
	return keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}
}

// dialStorageKeepalive is dialStorage with keepalive parameters kp (tests
// take gRPC's shortest).
func dialStorageKeepalive(addr string, dial []grpc.DialOption, kp keepalive.ClientParameters) (*grpc.ClientConn, error) {
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	// A storage (or shard) back from a restart is reached again within
	// seconds, not after gRPC's default backoff of up to two minutes, in
	// which every call would fail UNAVAILABLE.
	reconnect := backoff.DefaultConfig
	reconnect.MaxDelay = 3 * time.Second
	conn, err := grpc.NewClient(addr, append(dial,
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: reconnect, MinConnectTimeout: 10 * time.Second}),
		grpc.WithKeepaliveParams(kp),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))...)
	if err != nil {
		return nil, fmt.Errorf("dial storage %s: %w", addr, err)
	}
	return conn, nil
}

// listenAndServe serves g on the TCP address addr until ctx ends (see
// serveUntilDone), after logging the address it listens on with attrs
// and printing it.
func listenAndServe(ctx context.Context, role string, g *grpc.Server, addr string, logger *slog.Logger, attrs []any, beforeStop func()) error {
	lis, err := listenTCP(addr)
	if err != nil {
		return err
	}
	logger.Info(role+" serving", append([]any{"address", lis.Addr().String()}, attrs...)...)
	// Tests and scripts read the address from this line on stdout.
	fmt.Printf("paddock %s listening on %s\n", role, lis.Addr())
	return serveUntilDone(ctx, g, lis, beforeStop)
}

// serveUntilDone serves g on lis until ctx is cancelled, then runs
// beforeStop (if any: it sets the health service NOT_SERVING, so probes
// and balancers stop sending work, and ends streams that never end by
// themselves, such as worker sessions) and stops gracefully, cutting what is still open after
// five seconds.
func serveUntilDone(ctx context.Context, g *grpc.Server, lis net.Listener, beforeStop func()) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if beforeStop != nil {
		beforeStop()
	}
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		g.Stop()
	}
	return nil
}

// serveBackground serves g on lis in the background, for a listener that
// lives beside a role's main one (the worker protocol's). Serve returns nil
// once g is stopped; any other return means the listener broke, and then
// fail gets the error, so the role stops and says why instead of running
// on, unreachable on that listener. The channel is closed once Serve has
// returned (and fail, if called, has returned).
func serveBackground(g *grpc.Server, lis net.Listener, what string, fail func(error)) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		// ErrServerStopped: stopped before it began serving, not broken.
		if err := g.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			fail(fmt.Errorf("%s on %s: %w", what, lis.Addr(), err))
		}
	}()
	return done
}

// openDiskCAS opens the CAS on disk under dir. Without a policy it is one
// store, also returned as the local store whose files the worker of
// `paddock up` links directly. With a policy each tenant partition gets a
// store of its own under dir/partitions/NAME (each bounded by maxBytes),
// and there is no local store: links from it would cross partitions.
// (The local store is an interface, nil when absent: never a nil
// *DiskBlobStore, which would be a non-nil LocalBlobs.)
func openDiskCAS(dir string, maxBytes int64, policy *auth.Policy, logger *slog.Logger) (storage.BlobStore, worker.LocalBlobs, error) {
	if policy == nil {
		disk, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir, MaxBytes: maxBytes, Logger: logger, ScrubBytesPerSecond: scrubRate})
		if err != nil {
			return nil, nil, err
		}
		return disk, disk, nil
	}
	open := func(partition string) (storage.BlobStore, error) {
		return storage.NewDiskBlobStore(storage.DiskOptions{Dir: filepath.Join(dir, "partitions", partition), MaxBytes: maxBytes, Logger: logger, ScrubBytesPerSecond: scrubRate})
	}
	return storage.NewPartitionedBlobStore(policy.PartitionOf, open), nil, nil
}
