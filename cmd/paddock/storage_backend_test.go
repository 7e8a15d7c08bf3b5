package main

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/testlog"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// A backend tree opens recursively: a disk cache in front of shards, one
// of them a mirrored pair; blobs and results go through it, and the cache
// is the worker's local store.
func TestOpenBackendTree(t *testing.T) {
	dir := t.TempDir()
	disk := func(name string) configs.Backend {
		return configs.Backend{Disk: &configs.DiskBackend{Dir: filepath.Join(dir, name)}}
	}
	two := 2.0
	mirror := configs.Backend{Mirrored: &configs.MirroredBackend{Backends: []configs.Backend{disk("m0"), disk("m1")}}}
	sharded := configs.Backend{Sharded: &configs.ShardedBackend{Shards: []configs.Shard{
		{Name: "s0", Backend: ptr(disk("s0"))}, {Name: "s1", Weight: &two, Backend: &mirror}}}}
	tree := configs.Backend{Cached: &configs.CachedBackend{Dir: filepath.Join(dir, "cache"), MaxBytes: 1 << 20, Backend: &sharded}}
	o, err := openBackend(context.Background(), tree, "backend", backendDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if o.local == nil {
		t.Fatal("a cached backend without tenants gives no local store")
	}
	ctx := context.Background()
	var ds []digest.Digest
	for i := range 20 {
		data := bytes.Repeat([]byte{byte(i)}, 100+i)
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		if err := o.cas.Put(ctx, d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		if err := o.ac.Put(ctx, "", d, &repb.ActionResult{ExitCode: int32(i)}); err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
	}
	for i, d := range ds {
		if got, err := storagetest.ReadAll(t, o.cas, d, 0); err != nil || len(got) != 100+i {
			t.Fatalf("read %s: %v", d, err)
		}
		if r, err := o.ac.Get(ctx, "", d); err != nil || r.ExitCode != int32(i) {
			t.Fatalf("action cache %s: %v, %v", d, r, err)
		}
		if _, ok := o.local.Path(d); !ok {
			t.Fatalf("blob %s not in the local cache after a write", d)
		}
	}

	bad := configs.Backend{Sharded: &configs.ShardedBackend{Shards: []configs.Shard{{Name: "s0", Backend: &configs.Backend{}}}}}
	if _, err := openBackend(ctx, bad, "backend", backendDeps{}); err == nil || err.Error()[:32] != "backend.sharded.shards[0].backen" {
		t.Fatalf("bad tree: %v, want an error naming backend.sharded.shards[0].backend", err)
	}
}

func ptr[T any](v T) *T { return &v }

// loadExamplePolicy loads the repository's example auth policy
// (configs/auth.yaml), which has the tenants team-a and team-b.
func loadExamplePolicy(t *testing.T) *auth.Policy {
	t.Helper()
	policy, err := auth.LoadPolicy("../../configs/auth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return policy
}

// putIsHiddenFromOtherTenant stores data in cas as team-a and checks that
// team-b neither finds nor reads it: the CAS is partitioned by tenant. It
// returns the blob's digest.
func putIsHiddenFromOtherTenant(t *testing.T, cas storage.BlobStore, data []byte) digest.Digest {
	t.Helper()
	a := storage.WithInstance(context.Background(), "team-a")
	b := storage.WithInstance(context.Background(), "team-b")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := cas.Put(a, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if missing, err := cas.FindMissing(b, []digest.Digest{d}); err != nil || len(missing) != 1 {
		t.Fatalf("team-b looking up team-a's blob: missing %v, %v; want it missing", missing, err)
	}
	if _, err := cas.Get(b, d, 0); status.Code(err) != codes.NotFound {
		t.Fatalf("team-b reading team-a's blob: %v, want NOT_FOUND", err)
	}
	return d
}

// Under a policy, a cache in front of a shared backend is partitioned by
// tenant: a blob one tenant read into its cache is not served to another
// from there, and no cache is linked by the worker.
func TestOpenCachedUnderPolicyIsPartitioned(t *testing.T) {
	policy := loadExamplePolicy(t)
	dir := t.TempDir()
	tree := configs.Backend{Cached: &configs.CachedBackend{Dir: filepath.Join(dir, "cache"), MaxBytes: 1 << 20,
		Backend: &configs.Backend{Disk: &configs.DiskBackend{Dir: filepath.Join(dir, "disk")}}}}
	o, err := openBackend(context.Background(), tree, "backend", backendDeps{policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	if o.local != nil {
		t.Fatal("a partitioned cache is offered to the worker for hard links")
	}
	putIsHiddenFromOtherTenant(t, o.cas, []byte("team-a's secret"))
}

// Every mirror in a tree reports its repairs, labelled by its path, and
// the metrics of several register together.
func TestBackendTreeMetrics(t *testing.T) {
	dir := t.TempDir()
	mirror := func(name string) *configs.Backend {
		return &configs.Backend{Mirrored: &configs.MirroredBackend{Backends: []configs.Backend{
			{Disk: &configs.DiskBackend{Dir: filepath.Join(dir, name, "a")}}, {Disk: &configs.DiskBackend{Dir: filepath.Join(dir, name, "b")}}}}}
	}
	tree := configs.Backend{Sharded: &configs.ShardedBackend{Shards: []configs.Shard{{Name: "s0", Backend: mirror("s0")}, {Name: "s1", Backend: mirror("s1")}}}}
	o, err := openBackend(context.Background(), tree, "backend", backendDeps{})
	if err != nil {
		t.Fatal(err)
	}
	defer o.close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(o.collectors...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	mirrors := map[string]bool{}
	for _, f := range fams {
		for _, m := range f.Metric {
			for _, l := range m.Label {
				if f.GetName() == "paddock_storage_mirror_repairs_total" && l.GetName() == "mirror" {
					mirrors[l.GetValue()] = true
				}
			}
		}
	}
	if !mirrors["backend.sharded.shards[0].backend.mirrored"] || !mirrors["backend.sharded.shards[1].backend.mirrored"] {
		t.Fatalf("repair metrics for mirrors %v, want both shards' mirrors", mirrors)
	}
}

// TestSharedBackendUnderPolicyIsWarnedOf: only disk stores are partitioned
// by tenant, so a remote (or S3) leaf under an auth policy logs that its
// CAS is shared by every tenant, naming the backend; a disk tree, or no
// policy, logs nothing of the kind.
func TestSharedBackendUnderPolicyIsWarnedOf(t *testing.T) {
	policy := loadExamplePolicy(t)
	dir := t.TempDir()
	remote := configs.Backend{Cached: &configs.CachedBackend{Dir: filepath.Join(dir, "cache"), MaxBytes: 1 << 20,
		Backend: &configs.Backend{Remote: &configs.RemoteStorage{Endpoint: "127.0.0.1:1"}}}}
	disk := configs.Backend{Disk: &configs.DiskBackend{Dir: filepath.Join(dir, "disk")}}
	for _, c := range []struct {
		name   string
		tree   configs.Backend
		policy *auth.Policy
		warned bool
	}{
		{"remote under a policy", remote, policy, true},
		{"remote without a policy", remote, nil, false},
		{"disk under a policy", disk, policy, false},
	} {
		var log testlog.Buffer
		o, err := openBackend(context.Background(), c.tree, "backend", backendDeps{policy: c.policy, logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		o.close()
		got := strings.Contains(log.String(), "shared by every tenant") && strings.Contains(log.String(), "backend.cached.backend.remote")
		if got != c.warned {
			t.Errorf("%s: warned %v, want %v; log:\n%s", c.name, got, c.warned, log.String())
		}
	}
}
