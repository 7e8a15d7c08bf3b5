package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/bazeltest"
	"github.com/paddock-build/paddock/storage"
)

// TestBazelRemoteCache is the end-to-end check with a real REv2 client:
// Bazel 4.2.3 (Debian's bazel-bootstrap) builds the genrule chain in
// testdata/bazel with --remote_cache pointing at our server, the outputs
// are cleaned away, and the rebuild must take every action from the remote
// cache and produce the same bytes. Bazel's own action cache and output
// tree are gone after `bazel clean`, so a hit can only come from us.
func TestBazelRemoteCache(t *testing.T) {
	remoteCacheSuite(t, bazeltest.New(t, "testdata/bazel"))
}

// withoutInternal drops Bazel's own "internal" spawns from a process
// summary: Bazel 4 counts one per build, Bazel 2 none.
func withoutInternal(summary map[string]int) map[string]int {
	delete(summary, "internal")
	return summary
}

// TestBazel210RemoteCache is TestBazelRemoteCache with Bazel 2.1.0.
func TestBazel210RemoteCache(t *testing.T) {
	remoteCacheSuite(t, bazeltest.NewRelease(t, "testdata/bazel", bazeltest.Bazel210()))
}

// remoteCacheSuite is the body of TestBazelRemoteCache, run by each Bazel
// version.
func remoteCacheSuite(t *testing.T, b *bazeltest.Bazel) {
	dir := t.TempDir()
	cas, diskAC := diskStores(t, dir)
	ac := &countingActionCache{ActionCache: diskAC}
	addr := serveLoopback(t, storage.ServerOptions{CAS: cas, AC: ac})

	buildFlags := []string{
		"--noshow_progress", "--color=no", "--curses=no",
		// Run genrules as plain processes: no linux-sandbox (which needs
		// namespaces CI containers may not give) and no debug noise in the
		// stderr that Bazel caches with each result.
		"--spawn_strategy=local",
		"--remote_cache=grpc://" + addr,
		"--remote_upload_local_results",
		"//...",
	}
	outputs := []string{"greeting.txt", "shout.txt", "report.txt"}

	// First build: every genrule runs locally and is uploaded.
	out := b.Run(0, "build", buildFlags...)
	if got, want := withoutInternal(bazeltest.ProcessSummary(t, out)), map[string]int{"local": 3}; !maps.Equal(got, want) {
		t.Fatalf("first build: process summary %v, want %v\n%s", got, want, out)
	}
	if n := ac.puts.Load(); n != 3 {
		t.Errorf("first build stored %d action results, want 3 (one per genrule)", n)
	}
	first := map[string][]byte{}
	for _, name := range outputs {
		data, err := os.ReadFile(filepath.Join(b.WS, "bazel-bin", name))
		if err != nil {
			t.Fatal(err)
		}
		first[name] = data
		// The CAS holds every output, so the cache hits below can be served.
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		if missing, err := cas.FindMissing(t.Context(), []digest.Digest{d}); err != nil || len(missing) != 0 {
			t.Errorf("output %s (%s) is not in the CAS after the first build: missing %v, err %v", name, d, missing, err)
		}
	}
	if got, want := string(first["report.txt"]), "HELLO FROM PADDOCK\napple\nmango\nzebra\n"; got != want {
		t.Errorf("report.txt = %q, want %q", got, want)
	}
	if _, blobs, _ := cas.Stats(); blobs < len(outputs) {
		t.Errorf("CAS holds %d blobs after the first build, want at least %d", blobs, len(outputs))
	}

	// `bazel clean` removes the output tree and Bazel's local action cache.
	b.Run(0, "clean")
	if _, err := os.Stat(filepath.Join(b.WS, "bazel-bin", "report.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("report.txt survived bazel clean (stat: %v)", err)
	}

	// Second build: every genrule is a remote cache hit; nothing runs.
	hitsBefore := ac.hits.Load()
	out = b.Run(0, "build", buildFlags...)
	if got, want := withoutInternal(bazeltest.ProcessSummary(t, out)), map[string]int{"remote cache hit": 3}; !maps.Equal(got, want) {
		t.Fatalf("rebuild after clean: process summary %v, want %v (every genrule a remote cache hit)\n%s", got, want, out)
	}
	if n := ac.hits.Load() - hitsBefore; n != 3 {
		t.Errorf("rebuild read %d action results from the cache, want 3", n)
	}
	for _, name := range outputs {
		data, err := os.ReadFile(filepath.Join(b.WS, "bazel-bin", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, first[name]) {
			t.Errorf("%s after the cached rebuild = %q, first build wrote %q", name, data, first[name])
		}
	}
}

// countingActionCache counts what Bazel does with the action cache, so the
// test can tell its hits came from this server.
type countingActionCache struct {
	storage.ActionCache
	puts, hits atomic.Int64
}

func (c *countingActionCache) Get(ctx context.Context, instance string, action digest.Digest) (*repb.ActionResult, error) {
	r, err := c.ActionCache.Get(ctx, instance, action)
	if err == nil {
		c.hits.Add(1)
	}
	return r, err
}

func (c *countingActionCache) Put(ctx context.Context, instance string, action digest.Digest, result *repb.ActionResult) error {
	err := c.ActionCache.Put(ctx, instance, action, result)
	if err == nil {
		c.puts.Add(1)
	}
	return err
}
