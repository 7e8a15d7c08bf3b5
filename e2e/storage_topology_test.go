package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/bazeltest"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/storage/compose"
)

var storageReady = regexp.MustCompile(`^paddock storage listening on (\S+)`)

// storageNode is a `paddock storage` process serving as one backend of a
// storage front; it can be killed and started again on its address and
// directory. Nodes behind a front leave completeness checks to the front.
type storageNode struct {
	t               testing.TB
	name, dir, addr string
	cfg             string
	p               *process
}

func startStorageNode(t testing.TB, dir, name string) *storageNode {
	t.Helper()
	n := &storageNode{t: t, name: name, dir: filepath.Join(dir, name), cfg: filepath.Join(dir, name+".yaml")}
	if err := os.WriteFile(n.cfg, []byte("version: 1\ncheck_completeness: false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n.p, n.addr = startProcess(t, "storage-"+name, storageReady, "storage", "--config", n.cfg, "--listen", "127.0.0.1:0", "--dir", n.dir)
	return n
}

// restart starts the node again after a kill, on the same address.
func (n *storageNode) restart() {
	n.t.Helper()
	n.p, _ = startProcess(n.t, "storage-"+n.name+"-restarted", storageReady, "storage", "--config", n.cfg, "--listen", n.addr, "--dir", n.dir)
}

// startFront starts `paddock storage` with the backend tree backendYAML
// (indented under "backend:") and returns it with its gRPC and metrics
// addresses.
func startFront(t testing.TB, dir, backendYAML string) (*process, string, string) {
	t.Helper()
	cfg := filepath.Join(dir, "front.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\nbackend:\n"+backendYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	p, httpAddr := startProcess(t, "storage-front", regexp.MustCompile(`^paddock storage http listening on (\S+)`),
		"storage", "--config", cfg, "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "front"), "--http-listen", "127.0.0.1:0")
	select {
	case line := <-p.lines:
		if m := storageReady.FindStringSubmatch(line); m != nil {
			return p, m[1], httpAddr
		}
		t.Fatalf("storage front printed %q, want its listening address", line)
	case <-time.After(faultLimit):
		t.Fatal("storage front did not print its listening address")
	}
	return nil, "", ""
}

// stopAll stops the roles, then the nodes still running, and checks that
// nothing is left behind.
func stopAll(rs *roles, nodes ...*storageNode) {
	rs.t.Helper()
	rs.worker.stop(os.Interrupt)
	rs.runner.stop(os.Interrupt)
	rs.sched.stop(os.Interrupt)
	rs.storage.stop(os.Interrupt)
	for _, n := range nodes {
		select {
		case <-n.p.exited:
		default:
			n.p.stop(os.Interrupt)
		}
	}
	checkNoProcessesLeft(rs.t)
}

// cachedRebuild cleans and builds target again, and checks that every
// action came from the remote cache.
func cachedRebuild(t *testing.T, b *bazel, flags []string, target string, want int, when string) {
	t.Helper()
	b.Run(0, "clean")
	out := b.Run(0, "build", append(flags, target)...)
	summary := bazeltest.ProcessSummary(t, out)
	t.Logf("rebuild %s: %v", when, summary)
	if summary["remote cache hit"] != want || !onlyKinds(summary, "remote cache hit", "internal") {
		t.Fatalf("rebuild %s: process summary %v, want %d remote cache hits\n%s", when, summary, want, out)
	}
}

// TestBazelMirroredStorageBackendKilled: the farm's storage is a front
// over a mirrored pair of `paddock storage` processes. Either may be
// killed: Bazel 4.2.3's builds and cache hits go on with no error.
func TestBazelMirroredStorageBackendKilled(t *testing.T) {
	needPaddock(t)
	b := newBazel(t)
	dir := searchableTempDir(t)
	left, right := startStorageNode(t, dir, "left"), startStorageNode(t, dir, "right")
	front, frontAddr, _ := startFront(t, dir, fmt.Sprintf("  mirrored:\n    backends:\n    - remote: {endpoint: %q}\n    - remote: {endpoint: %q}\n", left.addr, right.addr))
	rs := startRolesOn(t, dir, filepath.Join(dir, "worker"), "reconnect_grace: 2s\n", false, front, frontAddr)
	rs.startWorker("w1")
	flags := b.remoteFlags(rs.schedAddr)

	out := b.Run(0, "build", append(flags, "//:report")...)
	remote := bazeltest.ProcessSummary(t, out)["remote"]
	if remote == 0 {
		t.Fatalf("first build ran nothing remotely\n%s", out)
	}
	left.p.kill()
	cachedRebuild(t, b, flags, "//:report", remote, "with the first mirror killed")
	// Writes with a mirror down: a failing test executes and its outputs
	// and log are stored (on the right side only).
	out = b.Run(3, "test", append(flags, "//:fail_test")...)
	if !regexp.MustCompile(`(?m)^//:fail_test\s+FAILED`).MatchString(out) || strings.Contains(out, "navailable") {
		t.Fatalf("//:fail_test with a mirror down: want FAILED and no storage error\n%s", out)
	}
	left.restart()
	right.p.kill()
	cachedRebuild(t, b, flags, "//:report", remote, "with the second mirror killed, the first back")
	b.Shutdown()
	stopAll(rs, left, right)
}

// TestBazelShardedStorageShardKilled: the farm's storage is a front over
// three shards, each a `paddock storage` process. One is killed: calls
// for its keys are UNAVAILABLE naming it, the others' keys are served;
// Bazel's retries (--remote_retries) get through once it is back.
func TestBazelShardedStorageShardKilled(t *testing.T) {
	needPaddock(t)
	b := newBazel(t)
	dir := searchableTempDir(t)
	names := []string{"s0", "s1", "s2"}
	var nodes []*storageNode
	tree := "  sharded:\n    shards:\n"
	var ws []compose.ShardWeight
	for _, name := range names {
		n := startStorageNode(t, dir, name)
		nodes = append(nodes, n)
		tree += fmt.Sprintf("    - {name: %s, backend: {remote: {endpoint: %q}}}\n", name, n.addr)
		ws = append(ws, compose.ShardWeight{Name: name, Weight: 1})
	}
	front, frontAddr, frontHTTP := startFront(t, dir, tree)
	rs := startRolesOn(t, dir, filepath.Join(dir, "worker"), "reconnect_grace: 2s\n", false, front, frontAddr)
	rs.startWorker("w1")
	flags := b.remoteFlags(rs.schedAddr)
	out := b.Run(0, "build", append(flags, "//:report")...)
	remote := bazeltest.ProcessSummary(t, out)["remote"]

	cas := repb.NewContentAddressableStorageClient(grpctest.Dial(t, frontAddr))
	blobs := uploadBlobs(t, cas, 30)
	nodes[1].p.kill()
	place, _ := compose.NewPlacement(ws)
	checkShardDown(t, cas, blobs, func(d *repb.Digest) string { return names[place.Pick("SHA256/"+d.Hash)] }, "s1")

	// Bazel, with the shard down: once it has met UNAVAILABLE (the front
	// answered some call so), the shard comes back and its retries succeed.
	unavailable := func() float64 {
		v, _ := familyValue(scrape(t, frontHTTP), "grpc_server_handled_total", "grpc_code=Unavailable")
		return v
	}
	before := unavailable()
	b.Run(0, "clean")
	done := make(chan bazelResult, 1)
	go func() {
		out, code, err := b.Exec("build", append(flags, "--remote_retries=30", "//:report")...)
		done <- bazelResult{out, code, err}
	}()
	waitFor(t, "Bazel's calls to meet the killed shard", bazeltest.CommandTimeout, func() bool {
		select {
		case r := <-done:
			t.Fatalf("bazel build ended before it met the killed shard: exit %d, %v\n%s", r.code, r.err, r.out)
		default:
		}
		return unavailable() > before
	})
	nodes[1].restart()
	r := <-done
	if r.err != nil || r.code != 0 {
		t.Fatalf("bazel build across the shard's restart: exit %d, %v\n%s", r.code, r.err, r.out)
	}
	summary := bazeltest.ProcessSummary(t, r.out)
	t.Logf("build across the shard's restart: %v (first build: %d remote)", summary, remote)
	if summary["remote cache hit"] != remote || !onlyKinds(summary, "remote cache hit", "internal") {
		t.Errorf("build across the shard's restart: %v, want %d remote cache hits", summary, remote)
	}
	if _, err := cas.FindMissingBlobs(t.Context(), &repb.FindMissingBlobsRequest{BlobDigests: blobs}); err != nil {
		t.Fatalf("FindMissingBlobs after the shard is back: %v", err)
	}
	b.Shutdown()
	stopAll(rs, nodes...)
}

// uploadBlobs stores n small blobs through cas and returns their digests.
func uploadBlobs(t *testing.T, cas repb.ContentAddressableStorageClient, n int) []*repb.Digest {
	t.Helper()
	var blobs []*repb.Digest
	req := &repb.BatchUpdateBlobsRequest{}
	for i := range n {
		data := []byte(fmt.Sprintf("shard test blob %d", i))
		blobs = append(blobs, digestOf(data))
		req.Requests = append(req.Requests, &repb.BatchUpdateBlobsRequest_Request{Digest: blobs[i], Data: data})
	}
	if _, err := cas.BatchUpdateBlobs(t.Context(), req); err != nil {
		t.Fatal(err)
	}
	return blobs
}

// checkShardDown looks each blob up alone: those on the killed shard are
// UNAVAILABLE naming it (and no address), the others are found.
func checkShardDown(t *testing.T, cas repb.ContentAddressableStorageClient, blobs []*repb.Digest, shardOf func(*repb.Digest) string, killed string) {
	t.Helper()
	onKilled := 0
	for _, d := range blobs {
		_, err := cas.FindMissingBlobs(t.Context(), &repb.FindMissingBlobsRequest{BlobDigests: []*repb.Digest{d}})
		if shardOf(d) != killed {
			if err != nil {
				t.Fatalf("blob on a live shard: %v", err)
			}
			continue
		}
		onKilled++
		if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"`+killed+`"`) || strings.Contains(err.Error(), "127.0.0.1") {
			t.Fatalf("blob on the killed shard: %v, want UNAVAILABLE naming %q and no address", err, killed)
		}
	}
	if onKilled == 0 || onKilled == len(blobs) {
		t.Fatalf("%d of %d blobs on the killed shard: the test needs both kinds", onKilled, len(blobs))
	}
}

// TestBazelUpCachedRemoteStorage: `paddock up --storage-config` with a
// bounded local disk cache in front of a `paddock storage` process. Bazel
// 4.2.3 executes remotely and then hits the cache; every blob the cache
// holds is in the remote too (writes go through, reads fill).
func TestBazelUpCachedRemoteStorage(t *testing.T) {
	needPaddock(t)
	b := newBazel(t)
	dir := searchableTempDir(t)
	remote, remoteAddr := startProcess(t, "storage-remote", storageReady, "storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "remote"))
	data := filepath.Join(dir, "data")
	cacheDir := filepath.Join(data, "cache")
	cfg := filepath.Join(dir, "up-storage.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 1\nbackend:\n  cached:\n    dir: %s\n    max_bytes: 1GiB\n    backend: {remote: {endpoint: %q}}\n", cacheDir, remoteAddr)), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startUp(t, data, "--storage-config", cfg)
	flags := b.remoteFlags(f.addr)
	out := b.Run(0, "build", append(flags, "//:report")...)
	remoteRuns := bazeltest.ProcessSummary(t, out)["remote"]
	if remoteRuns == 0 {
		t.Fatalf("nothing ran remotely\n%s", out)
	}
	b.checkOutputs(map[string]string{"bazel-bin/report.txt": "HELLO FROM PADDOCK\nhello, paddock\n"})
	cachedRebuild(t, b, flags, "//:report", remoteRuns, "through the disk cache")

	var cached []*repb.Digest
	err := filepath.WalkDir(filepath.Join(cacheDir, "cas", "sha256"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		cached = append(cached, &repb.Digest{Hash: d.Name(), SizeBytes: info.Size()})
		return nil
	})
	if err != nil || len(cached) == 0 {
		t.Fatalf("the disk cache holds %d blobs (%v), want the build's", len(cached), err)
	}
	resp, err := repb.NewContentAddressableStorageClient(grpctest.Dial(t, remoteAddr)).FindMissingBlobs(t.Context(), &repb.FindMissingBlobsRequest{BlobDigests: cached})
	if err != nil || len(resp.MissingBlobDigests) != 0 {
		t.Fatalf("blobs of the cache missing from the remote: %v, %v", resp.GetMissingBlobDigests(), err)
	}
	t.Logf("%d blobs in the disk cache, all in the remote", len(cached))
	b.Shutdown()
	remote.stop(os.Interrupt)
	f.shutdown() // checks that nothing is left running
}
