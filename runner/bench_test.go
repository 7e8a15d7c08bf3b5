package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/proctest"
	"github.com/paddock-build/paddock/sandbox"
)

// reportPercentiles adds p50 and p90 of ds (per-op latencies) to b.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(ds[len(ds)*9/10].Microseconds())/1000, "p90-ms")
}

// BenchmarkRunTrivial is the per-action overhead of the runner: a Run of
// /bin/true on the host's root over the UNIX socket — platform parsing,
// the host view's skeleton, chown of the input root, bundle, sandbox
// start and teardown, response. One action at a time.
func BenchmarkRunTrivial(b *testing.B) {
	e := newTestEnv(b, nil)
	a := e.newAction(b)
	req := a.request("/bin/true")
	benchRuns(b, e, a, req)
}

// BenchmarkRunTrivialImage is BenchmarkRunTrivial in a cached image's
// rootfs (busybox true): no host view, a hold on the image instead.
func BenchmarkRunTrivialImage(b *testing.B) {
	ref, host := pushBusyboxImage(b)
	base := searchableTempDir(b)
	e := newTestEnvIn(b, base, func(c *Config) {
		c.Images.Dir = filepath.Join(base, "images")
		c.Images.Insecure = []string{host}
	})
	a := e.newAction(b)
	req := a.request("/bin/busybox", "true")
	req.Platform = []*runnerpb.Property{{Name: "container-image", Value: ref}}
	benchRuns(b, e, a, req)
}

// benchRuns runs req once to warm up (pull, skeleton), then b.N times over
// the socket, and reports the latency percentiles and the CPU time of this
// process per Run (cpu-ms/op): the runner service and its gRPC client, not
// the sandbox spawner (a child process) nor the sandboxes.
func benchRuns(b *testing.B, e *testEnv, a *action, req *runnerpb.RunRequest) {
	ctx := context.Background()
	mustSucceed(b, a, e.run(b, req))
	ds := make([]time.Duration, 0, b.N)
	cpu := proctest.SelfCPU()
	defer func() {
		b.ReportMetric(float64((proctest.SelfCPU()-cpu).Microseconds())/1000/float64(b.N), "cpu-ms/op")
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		resp, err := e.client.Run(ctx, req)
		ds = append(ds, time.Since(start))
		if err != nil || resp.StatusCode != 0 || resp.ExitCode != 0 {
			b.Fatalf("Run: %v %v", resp, err)
		}
	}
	b.StopTimer()
	reportPercentiles(b, ds)
}

// BenchmarkRunnerOverhead alternates, on one launcher, a Run through the
// runner (as BenchmarkRunTrivial) and a launch of the same, prebuilt
// bundle straight through the sandbox package, so both see the same
// machine load. It reports both distributions; the difference is what the
// runner adds (socket, parsing, host view, chown, config.json, response).
func BenchmarkRunnerOverhead(b *testing.B) {
	e := newTestEnv(b, nil)
	a := e.newAction(b)
	req := a.request("/bin/true")
	plat, err := parsePlatform(&e.cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	view, err := planHostView(osLister{}, e.svc.hidden, ownMountPoints(inputRootPath(&e.cfg, plat)))
	if err != nil {
		b.Fatal(err)
	}
	in := specInput{Config: &e.cfg, Request: req, Platform: plat, IDBase: e.cfg.IDBase, HostBinds: view.Binds}
	var done func()
	if in.Rootfs, done, err = acquireView(e.svc.roots, view); err != nil {
		b.Fatal(err)
	}
	defer done()
	spec, err := buildSpec(in)
	if err != nil {
		b.Fatal(err)
	}
	bundle := filepath.Join(searchableTempDir(b), "bundle")
	if err := os.Mkdir(bundle, 0o711); err != nil {
		b.Fatal(err)
	}
	data, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	sreq := sandbox.Request{Bundle: bundle, Stdout: a.stdout, Stderr: a.stderr}
	direct := func() time.Duration {
		start := time.Now()
		res, err := e.svc.launcher.Run(ctx, sreq)
		if err != nil || res.ExitCode != 0 {
			b.Fatalf("sandbox Run: %+v %v", res, err)
		}
		return time.Since(start)
	}
	viaRunner := func() time.Duration {
		start := time.Now()
		resp, err := e.client.Run(ctx, req)
		if err != nil || resp.StatusCode != 0 || resp.ExitCode != 0 {
			b.Fatalf("Run: %v %v", resp, err)
		}
		return time.Since(start)
	}
	direct()
	viaRunner()
	var rs, ds []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rs = append(rs, viaRunner())
		ds = append(ds, direct())
	}
	b.StopTimer()
	sort.Slice(rs, func(i, j int) bool { return rs[i] < rs[j] })
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(rs[len(rs)/2]), "runner-p50-ms")
	b.ReportMetric(ms(rs[len(rs)*9/10]), "runner-p90-ms")
	b.ReportMetric(ms(ds[len(ds)/2]), "sandbox-p50-ms")
	b.ReportMetric(ms(ds[len(ds)*9/10]), "sandbox-p90-ms")
}

// BenchmarkHostView is the runner's own cost of a host-root rootfs per
// action on this machine. "cached" is what Run does: check that the host
// directories a cached plan was made from are unchanged (hostViews).
// "shared" plans every time (read the host's top level) and looks the
// skeleton up. "per-action" is the alternative both avoid: create the
// skeleton for each action and remove it afterwards.
func BenchmarkHostView(b *testing.B) {
	cfg := DefaultConfig()
	mounts := ownMountPoints(cfg.InputRootPath)
	b.Run("cached", func(b *testing.B) {
		sk := newSkeletons(b.TempDir())
		c := newHostViews(osLister{}, cfg.HostHiddenPaths, sk, defaultMountPoints())
		for i := 0; i < b.N; i++ {
			_, _, done, err := c.get(cfg.InputRootPath)
			if err != nil {
				b.Fatal(err)
			}
			done()
		}
	})
	b.Run("shared", func(b *testing.B) {
		sk := newSkeletons(b.TempDir())
		for i := 0; i < b.N; i++ {
			v, err := planHostView(osLister{}, cfg.HostHiddenPaths, mounts)
			if err != nil {
				b.Fatal(err)
			}
			_, done, err := acquireView(sk, v)
			if err != nil {
				b.Fatal(err)
			}
			done()
			if i == 0 {
				b.ReportMetric(float64(len(v.Binds)), "binds")
			}
		}
	})
	b.Run("per-action", func(b *testing.B) {
		dir := b.TempDir()
		for i := 0; i < b.N; i++ {
			v, err := planHostView(osLister{}, cfg.HostHiddenPaths, mounts)
			if err != nil {
				b.Fatal(err)
			}
			p := filepath.Join(dir, "rootfs")
			if err := v.create(p); err != nil {
				b.Fatal(err)
			}
			if err := os.RemoveAll(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// genruleScript is the shape of a leaf of the Bazel fan-out benchmark
// (e2e/testdata/fanout): bash with two command substitutions and a
// pipeline, six programs of coreutils.
const genruleScript = `echo "leaf 7 $({ cat in.txt; echo 7; } | tr a-z A-Z | sha256sum | cut -c1-16) $(wc -w < in.txt)" > out.txt`

// BenchmarkRunGenrule is BenchmarkRunTrivial with the command of a genrule
// instead of /bin/true, one action at a time, in the same input root. Its
// whole cost (runner, spawner, init and the command's processes) is what
// `perf stat` counts over the test binary; compare it with the same
// script run bare and in bubblewrap (docs/benchmarks.md):
//
//	go test -c -o /tmp/runner.test ./runner
//	perf stat -e task-clock /tmp/runner.test -test.run '^$' -test.bench RunGenrule -test.benchtime 300x
func BenchmarkRunGenrule(b *testing.B) {
	e := newTestEnv(b, nil)
	a := e.newAction(b)
	if err := os.WriteFile(filepath.Join(a.root, "in.txt"), []byte("alpha bravo charlie delta echo foxtrot\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	req := a.request("/bin/bash", "-c", genruleScript)
	req.EnvironmentVariables = []*runnerpb.EnvironmentVariable{{Name: "PATH", Value: "/bin:/usr/bin:/usr/local/bin"}}
	benchRuns(b, e, a, req)
}
