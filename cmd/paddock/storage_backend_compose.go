package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
)

// mirrorRepairs bounds the background copies one mirrored backend runs.
const mirrorRepairs = 4

// openChildren opens the backends of a composite, closing those already
// open if one fails.
func openChildren(ctx context.Context, bs []configs.Backend, paths []string, deps backendDeps) ([]openedBackend, func(), error) {
	var opened []openedBackend
	closeAll := func() {
		for _, o := range opened {
			o.close()
		}
	}
	for i, b := range bs {
		o, err := openBackend(ctx, b, paths[i], deps)
		if err != nil {
			closeAll()
			return nil, nil, err
		}
		opened = append(opened, o)
	}
	return opened, closeAll, nil
}

// childCollectors gathers the metrics of a composite's children.
func childCollectors(children []openedBackend) []prometheus.Collector {
	var out []prometheus.Collector
	for _, c := range children {
		out = append(out, c.collectors...)
	}
	return out
}

// openCached opens a disk cache in front of c.Backend. Its files are the
// worker's local blobs. Under a policy the CAS is partitioned by tenant, so
// each partition gets a cache of its own (c.Dir/partitions/NAME, each
// bounded by c.MaxBytes) and there are no local blobs: one cache would
// serve a tenant blobs another read, and links would cross partitions.
func openCached(ctx context.Context, c *configs.CachedBackend, path string, deps backendDeps) (openedBackend, error) {
	inner, err := openBackend(ctx, *c.Backend, path+".backend", deps)
	if err != nil {
		return openedBackend{}, err
	}
	open := func(dir string) (*compose.CachedBlobStore, error) {
		disk, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir, MaxBytes: int64(c.MaxBytes), Logger: deps.logger, ScrubBytesPerSecond: scrubRate})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return compose.NewCachedBlobStore(disk, inner.cas, path+".backend", deps.logger), nil
	}
	o := openedBackend{ac: inner.ac, close: inner.close}
	if deps.policy != nil {
		o.cas = storage.NewPartitionedBlobStore(deps.policy.PartitionOf, func(partition string) (storage.BlobStore, error) {
			return open(filepath.Join(c.Dir, "partitions", partition))
		})
		o.collectors = append(inner.collectors, storage.DiskCollector(path, o.cas))
		return o, nil
	}
	cached, err := open(c.Dir)
	if err != nil {
		inner.close()
		return openedBackend{}, err
	}
	o.cas, o.local = cached, cached.Cache()
	o.collectors = append(inner.collectors, storage.DiskCollector(path, cached))
	return o, nil
}

// openSharded opens every shard; the CAS and the action cache share the
// placement, so an action's result lives with its Action blob.
func openSharded(ctx context.Context, s *configs.ShardedBackend, path string, deps backendDeps) (openedBackend, error) {
	var bs []configs.Backend
	var paths []string
	for i, sh := range s.Shards {
		bs = append(bs, *sh.Backend)
		paths = append(paths, fmt.Sprintf("%s.shards[%d].backend", path, i))
	}
	opened, closeAll, err := openChildren(ctx, bs, paths, deps)
	if err != nil {
		return openedBackend{}, err
	}
	var blobShards []compose.BlobShard
	var acShards []compose.ACShard
	for i, sh := range s.Shards {
		blobShards = append(blobShards, compose.BlobShard{Name: sh.Name, Weight: sh.WeightOrDefault(), Store: opened[i].cas})
		acShards = append(acShards, compose.ACShard{Name: sh.Name, Weight: sh.WeightOrDefault(), Cache: opened[i].ac})
	}
	cas, err := compose.NewShardedBlobStore(blobShards)
	if err != nil {
		closeAll()
		return openedBackend{}, fmt.Errorf("%s: %w", path, err)
	}
	ac, err := compose.NewShardedActionCache(acShards)
	if err != nil {
		closeAll()
		return openedBackend{}, fmt.Errorf("%s: %w", path, err)
	}
	return openedBackend{cas: cas, ac: ac, close: closeAll, collectors: childCollectors(opened)}, nil
}

// openMirrored opens both sides; they are named by their paths in errors
// and logs.
func openMirrored(ctx context.Context, m *configs.MirroredBackend, path string, deps backendDeps) (openedBackend, error) {
	paths := []string{path + ".backends[0]", path + ".backends[1]"}
	opened, closeAll, err := openChildren(ctx, m.Backends, paths, deps)
	if err != nil {
		return openedBackend{}, err
	}
	rep := compose.NewRepairer(mirrorRepairs, deps.logger)
	cas := compose.NewMirroredBlobStore(compose.Mirror{Name: paths[0], Store: opened[0].cas}, compose.Mirror{Name: paths[1], Store: opened[1].cas}, rep, deps.logger)
	ac := compose.NewMirroredActionCache(compose.ACMirror{Name: paths[0], Cache: opened[0].ac}, compose.ACMirror{Name: paths[1], Cache: opened[1].ac}, rep, deps.logger)
	return openedBackend{cas: cas, ac: ac, close: func() { rep.Close(); closeAll() },
		collectors: append(childCollectors(opened), rep.Collector(path))}, nil
}
