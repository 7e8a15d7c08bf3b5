package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
	"github.com/paddock-build/paddock/worker"
)

// backendDeps is what opening a storage backend may need besides its
// config: credentials for dialling remote endpoints, the auth policy
// (a disk CAS is partitioned by tenant under one), and the logger.
type backendDeps struct {
	dial   []grpc.DialOption
	policy *auth.Policy
	logger *slog.Logger
}

// openedBackend is an opened storage backend.
type openedBackend struct {
	cas storage.BlobStore
	ac  storage.ActionCache
	// local is the disk CAS whose files a worker in this process may hard
	// link; nil when the blobs are not on a local disk (or partitioned).
	local worker.LocalBlobs
	// adopt is the disk CAS that keeps a worker's output files by a hard
	// link: the store itself, never a cache in front of another (whose
	// backend would not get the blob); nil otherwise.
	adopt worker.Adopter
	// close releases connections; it is never nil.
	close func()
	// collectors are the Prometheus metrics of the tree's composites and
	// disk stores, each labelled with its path in the tree.
	collectors []prometheus.Collector
	// maxBlobBytes is the largest blob the CAS holds, when it is known
	// (a disk backend); 0 otherwise.
	maxBlobBytes int64
}

// openBackend opens the backend tree b; path names it in errors.
func openBackend(ctx context.Context, b configs.Backend, path string, deps backendDeps) (openedBackend, error) {
	if err := b.Validate(path); err != nil {
		return openedBackend{}, err
	}
	switch {
	case b.Disk != nil:
		warnUnbounded(deps, path+".disk", b.Disk)
		cas, local, err := openDiskCAS(b.Disk.Dir, int64(b.Disk.MaxBytes), deps.policy, deps.logger)
		if err != nil {
			return openedBackend{}, fmt.Errorf("%s.disk: %w", path, err)
		}
		ac, err := storage.NewDiskActionCacheBounded(b.Disk.Dir, int64(b.Disk.ActionCacheMaxBytes), deps.logger)
		if err != nil {
			return openedBackend{}, fmt.Errorf("%s.disk: %w", path, err)
		}
		adopt, _ := local.(worker.Adopter) // nil when partitioned
		return openedBackend{cas: cas, ac: ac, local: local, adopt: adopt, close: func() {}, maxBlobBytes: storage.DiskMaxBlobBytes(int64(b.Disk.MaxBytes)),
			collectors: []prometheus.Collector{storage.DiskCollector(path+".disk", cas)}}, nil
	case b.Cached != nil:
		return openCached(ctx, b.Cached, path+".cached", deps)
	case b.Sharded != nil:
		return openSharded(ctx, b.Sharded, path+".sharded", deps)
	case b.Mirrored != nil:
		return openMirrored(ctx, b.Mirrored, path+".mirrored", deps)
	case b.S3 != nil:
		return openS3Backend(ctx, b.S3, path+".s3", deps)
	default: // b.Remote, as Validate guarantees
		warnSharedByTenants(deps, path+".remote")
		conn, err := dialStorage(b.Remote.Endpoint, deps.dial)
		if err != nil {
			return openedBackend{}, fmt.Errorf("%s.remote: %w", path, err)
		}
		// The action cache keeps results under the CAS's instance name,
		// each caller's instance below it (storage.NewRemoteActionCacheUnder).
		return openedBackend{cas: storage.NewRemoteBlobStore(conn, storage.RemoteOptions{InstanceName: b.Remote.InstanceName}),
			ac:    compose.NamedActionCache{AC: storage.NewRemoteActionCacheUnder(conn, b.Remote.InstanceName), Name: path + ".remote"},
			close: func() { conn.Close() }}, nil
	}
}

// warnUnbounded says that the disk store at path has no size bound, when
// it has none: unlike storage.max_bytes (10GiB), a backend tree's disk
// has no default bound, and a config that moved from dir to backend.disk
// lost its bound without a word (outside probe).
func warnUnbounded(deps backendDeps, path string, d *configs.DiskBackend) {
	if deps.logger != nil && (d.MaxBytes == 0 || d.ActionCacheMaxBytes == 0) {
		deps.logger.Warn("storage: this disk store has no size bound: it grows until its disk is full (set max_bytes and action_cache_max_bytes; 0, the default in a backend tree, is no bound)",
			"backend", path, "max_bytes", int64(d.MaxBytes), "action_cache_max_bytes", int64(d.ActionCacheMaxBytes))
	}
}

// warnSharedByTenants says, under an auth policy, that the remote backend
// at path keeps one CAS for every tenant. Disk stores and S3 buckets are
// partitioned by tenant (a directory or a key prefix each); a remote
// endpoint answers every tenant's FindMissingBlobs and reads from the
// same blobs (this front cannot make it keep them apart), so a client
// can read another tenant's blob whose digest it knows, through a cache
// in front as well (docs/security.md).
func warnSharedByTenants(deps backendDeps, path string) {
	if deps.policy != nil {
		deps.logger.Warn("storage: this backend's CAS is shared by every tenant of the auth policy: a client can read another tenant's blob whose digest it knows (disk and S3 stores are partitioned by tenant, a remote one cannot be from here)", "backend", path)
	}
}

// storageBackend is the backend a storage config names: its backend tree,
// or else the older remote endpoint, or else the disk under its dir.
func storageBackend(cfg configs.Storage) (configs.Backend, error) {
	switch {
	case cfg.Backend != nil && cfg.Remote.Endpoint != "":
		return configs.Backend{}, fmt.Errorf("config: remote and backend are both set; keep only backend")
	case cfg.Backend != nil:
		return *cfg.Backend, nil
	case cfg.Remote.Endpoint != "":
		r := cfg.Remote
		return configs.Backend{Remote: &r}, nil
	}
	return configs.Backend{Disk: &configs.DiskBackend{Dir: cfg.Dir, MaxBytes: cfg.MaxBytes, ActionCacheMaxBytes: cfg.ActionCacheMaxBytes}}, nil
}
