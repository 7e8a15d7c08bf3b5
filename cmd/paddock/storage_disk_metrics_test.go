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

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/testlog"
)

// storedBlobs gathers reg and returns paddock_storage_cas_stored_blobs by
// its store and partition labels ("store/partition").
func storedBlobs(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != "paddock_storage_cas_stored_blobs" {
			continue
		}
		for _, m := range f.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["store"]+"/"+labels["partition"]] = m.GetGauge().GetValue()
		}
	}
	return out
}

// Every disk CAS of a backend tree reports its size, labelled with its
// path and, under an auth policy, its tenant partition. With a policy, or
// a cached backend, none had been reported: an outside probe filled a
// tenant's CAS and its refusals were counted nowhere.
func TestEveryDiskOfATreeReportsItsMetrics(t *testing.T) {
	policy := loadExamplePolicy(t)
	dir := t.TempDir()
	disk := configs.Backend{Disk: &configs.DiskBackend{Dir: filepath.Join(dir, "disk")}}
	cached := configs.Backend{Cached: &configs.CachedBackend{Dir: filepath.Join(dir, "cache"), MaxBytes: 1 << 20,
		Backend: &configs.Backend{Disk: &configs.DiskBackend{Dir: filepath.Join(dir, "behind")}}}}
	for _, c := range []struct {
		name string
		tree configs.Backend
		deps backendDeps
		want []string // store/partition series holding the blob
	}{
		{"disk", disk, backendDeps{}, []string{"backend.disk/"}},
		{"disk under a policy", disk, backendDeps{policy: policy}, []string{"backend.disk/team-a"}},
		{"cached", cached, backendDeps{}, []string{"backend.cached/", "backend.cached.backend.disk/"}},
		{"cached under a policy", cached, backendDeps{policy: policy}, []string{"backend.cached/team-a", "backend.cached.backend.disk/team-a"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Each case its own directories: the disk stores would find the
			// blobs of the case before.
			c.tree = retarget(c.tree, t.TempDir())
			o, err := openBackend(context.Background(), c.tree, "backend", c.deps)
			if err != nil {
				t.Fatal(err)
			}
			defer o.close()
			reg := prometheus.NewRegistry()
			reg.MustRegister(o.collectors...)
			if c.deps.policy != nil {
				putIsHiddenFromOtherTenant(t, o.cas, []byte("team-a's blob"))
			} else {
				data := []byte("a blob")
				if err := o.cas.Put(context.Background(), digest.FromBytes(repb.DigestFunction_SHA256, data), bytes.NewReader(data)); err != nil {
					t.Fatal(err)
				}
			}
			got := storedBlobs(t, reg)
			for _, series := range c.want {
				if got[series] != 1 {
					t.Errorf("stored blobs %v; want 1 for %s", got, series)
				}
			}
		})
	}
}

// retarget moves a tree's disk and cache directories under dir.
func retarget(b configs.Backend, dir string) configs.Backend {
	switch {
	case b.Disk != nil:
		d := *b.Disk
		d.Dir = filepath.Join(dir, filepath.Base(d.Dir))
		b.Disk = &d
	case b.Cached != nil:
		c := *b.Cached
		c.Dir = filepath.Join(dir, filepath.Base(c.Dir))
		inner := retarget(*c.Backend, dir)
		c.Backend = &inner
		b.Cached = &c
	}
	return b
}

// A disk store of a backend tree without max_bytes has no bound, unlike
// storage.max_bytes (10GiB): opening one says so, naming it.
func TestUnboundedDiskIsWarnedOf(t *testing.T) {
	for _, c := range []struct {
		disk   configs.DiskBackend
		warned bool
	}{
		{configs.DiskBackend{}, true},
		{configs.DiskBackend{MaxBytes: 1 << 30}, true},
		{configs.DiskBackend{MaxBytes: 1 << 30, ActionCacheMaxBytes: 1 << 20}, false},
	} {
		var log testlog.Buffer
		c.disk.Dir = t.TempDir()
		o, err := openBackend(context.Background(), configs.Backend{Disk: &c.disk}, "backend", backendDeps{logger: slog.New(slog.NewTextHandler(&log, nil))})
		if err != nil {
			t.Fatal(err)
		}
		o.close()
		got := strings.Contains(log.String(), "no size bound") && strings.Contains(log.String(), "backend.disk")
		if got != c.warned {
			t.Errorf("max_bytes %d, action_cache_max_bytes %d: warned %v, want %v; log:\n%s", c.disk.MaxBytes, c.disk.ActionCacheMaxBytes, got, c.warned, log.String())
		}
	}
}
