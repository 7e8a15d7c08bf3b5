package storage_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestBazelRemoteCache is the end-to-end check with a real REv2 client:
// Bazel 4.2.3 (Debian's bazel-bootstrap) builds the genrule chain in
// testdata/bazel with --remote_cache pointing at our server, the outputs
// are cleaned away, and the rebuild must take every action from the remote
// cache and produce the same bytes. Bazel's own action cache and output
// tree are gone after `bazel clean`, so a hit can only come from us.
func TestBazelRemoteCache(t *testing.T) {
	bazel, err := exec.LookPath("bazel")
	if err != nil {
		t.Skip("bazel is not on PATH; install Debian's bazel-bootstrap (Bazel 4.2.3) to run the end-to-end remote cache test")
	}
	if testing.Short() {
		t.Skip("starting Bazel takes tens of seconds; skipped in -short mode")
	}

	dir := t.TempDir()
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	diskAC, err := storage.NewDiskActionCache(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	ac := &countingActionCache{ActionCache: diskAC}
	addr := serveLoopback(t, storage.ServerOptions{CAS: cas, AC: ac})

	ws := filepath.Join(t.TempDir(), "ws")
	if err := os.CopyFS(ws, os.DirFS("testdata/bazel")); err != nil {
		t.Fatal(err)
	}
	b := &bazelRunner{t: t, bin: bazel, ws: ws, userRoot: filepath.Join(t.TempDir(), "bazel-root")}
	t.Cleanup(b.shutdown)

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
	out := b.run("build", buildFlags...)
	if got, want := processSummary(t, out), map[string]int{"local": 3, "internal": 1}; !maps.Equal(got, want) {
		t.Fatalf("first build: process summary %v, want %v\n%s", got, want, out)
	}
	if n := ac.puts.Load(); n != 3 {
		t.Errorf("first build stored %d action results, want 3 (one per genrule)", n)
	}
	first := map[string][]byte{}
	for _, name := range outputs {
		data, err := os.ReadFile(filepath.Join(ws, "bazel-bin", name))
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
	b.run("clean")
	if _, err := os.Stat(filepath.Join(ws, "bazel-bin", "report.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("report.txt survived bazel clean (stat: %v)", err)
	}

	// Second build: every genrule is a remote cache hit; nothing runs.
	hitsBefore := ac.hits.Load()
	out = b.run("build", buildFlags...)
	if got, want := processSummary(t, out), map[string]int{"remote cache hit": 3, "internal": 1}; !maps.Equal(got, want) {
		t.Fatalf("rebuild after clean: process summary %v, want %v (every genrule a remote cache hit)\n%s", got, want, out)
	}
	if n := ac.hits.Load() - hitsBefore; n != 3 {
		t.Errorf("rebuild read %d action results from the cache, want 3", n)
	}
	for _, name := range outputs {
		data, err := os.ReadFile(filepath.Join(ws, "bazel-bin", name))
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

// serveLoopback serves opts on a loopback port until the test ends and
// returns its address.
func serveLoopback(t testing.TB, opts storage.ServerOptions) string {
	t.Helper()
	srv := storage.NewServer(opts)
	g := grpc.NewServer(srv.GRPCServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go g.Serve(lis)
	t.Cleanup(func() {
		g.Stop()
		srv.Close()
	})
	return lis.Addr().String()
}

// bazelRunner runs Bazel commands in one workspace with a private output
// user root, so nothing depends on (or lands in) ~/.cache/bazel.
type bazelRunner struct {
	t                 *testing.T
	bin, ws, userRoot string
}

// bazelCommandTimeout bounds one Bazel command, so that a hung client fails
// the test instead of the whole run; it is not an assertion on speed.
const bazelCommandTimeout = 4 * time.Minute

func (b *bazelRunner) command(ctx context.Context, args ...string) *exec.Cmd {
	startup := []string{
		"--output_user_root=" + b.userRoot,
		// Keep the system bazelrc: Debian's sets the install base
		// (/usr/share/bazel) there. A user's ~/.bazelrc stays out.
		"--nohome_rc", "--noworkspace_rc",
		// If the test dies before its cleanup, the server still goes away.
		"--max_idle_secs=300",
	}
	cmd := exec.CommandContext(ctx, b.bin, append(startup, args...)...)
	cmd.Dir = b.ws
	// The Bazel server outlives the client; never wait on pipes it holds.
	cmd.WaitDelay = 10 * time.Second
	return cmd
}

// run runs one Bazel command and returns its combined output; any failure
// is fatal.
func (b *bazelRunner) run(command string, flags ...string) string {
	b.t.Helper()
	args := append([]string{command}, flags...)
	ctx, cancel := context.WithTimeout(b.t.Context(), bazelCommandTimeout)
	defer cancel()
	out, err := b.command(ctx, args...).CombinedOutput()
	if err != nil {
		b.t.Fatalf("bazel %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// shutdown stops the Bazel server and makes the output user root
// removable (Bazel leaves read-only files and directories in it).
func (b *bazelRunner) shutdown() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := b.command(ctx, "shutdown").CombinedOutput(); err != nil {
		b.t.Errorf("bazel shutdown: %v\n%s", err, out)
	}
	_ = filepath.WalkDir(b.userRoot, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(path, 0o755)
		}
		return nil
	})
}

// processSummaryRE matches Bazel's line "INFO: 4 processes: 3 remote cache
// hit, 1 internal." (Bazel 4.x; "1 process: ..." when there is one).
var processSummaryRE = regexp.MustCompile(`(?m)^INFO: (\d+) process(?:es)?: (.*)\.$`)

// processSummary parses the process summary line into counts by kind, and
// checks they add up to the total.
func processSummary(t *testing.T, out string) map[string]int {
	t.Helper()
	m := processSummaryRE.FindAllStringSubmatch(out, -1)
	if len(m) != 1 {
		t.Fatalf("found %d process summary lines in Bazel's output, want 1:\n%s", len(m), out)
	}
	total, _ := strconv.Atoi(m[0][1])
	counts := map[string]int{}
	sum := 0
	for _, part := range strings.Split(m[0][2], ", ") {
		n, kind, ok := strings.Cut(part, " ")
		count, err := strconv.Atoi(n)
		if !ok || err != nil {
			t.Fatalf("cannot parse %q in process summary %q", part, m[0][0])
		}
		counts[kind] += count
		sum += count
	}
	if sum != total {
		t.Fatalf("process summary %q: kinds add up to %d, not %d", m[0][0], sum, total)
	}
	return counts
}
