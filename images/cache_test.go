package images

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/prometheus/client_golang/prometheus"
)

// checkBusyboxRootfs asserts what busyboxImage must look like once
// flattened: busybox runs, the whiteout and opaque directory took effect,
// and the config came through without the entrypoint.
func checkBusyboxRootfs(t *testing.T, rf *Rootfs, marker string) {
	t.Helper()
	p := rf.Path
	out, err := exec.Command(filepath.Join(p, "bin/busybox"), "echo", "hello").Output()
	if err != nil || string(out) != "hello\n" {
		t.Errorf("busybox from rootfs: %q, %v", out, err)
	}
	if target, err := os.Readlink(filepath.Join(p, "bin/sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	if _, err := os.Lstat(filepath.Join(p, "etc/passwd")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("etc/passwd should be whited out: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(p, "opt/old/a.txt")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("opt/old/a.txt should be hidden by the opaque directory: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(p, "opt/old/new.txt")); err != nil || string(b) != "upper" {
		t.Errorf("opt/old/new.txt = %q, %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(p, "etc/marker")); err != nil || string(b) != marker {
		t.Errorf("etc/marker = %q, %v; want %q", b, err, marker)
	}
	want := ImageConfig{Env: []string{"PATH=/bin", "LANG=C"}, WorkingDir: "/work", User: "1000:1000"}
	if !reflect.DeepEqual(rf.Config, want) {
		t.Errorf("config = %+v, want %+v", rf.Config, want)
	}
}

func TestPullByTagAndDigest(t *testing.T) {
	r := newTestRegistry(t)
	digest := r.push(t, "tools/bb:1", busyboxImage(t, "one"))
	dir := t.TempDir()
	// As on a worker, every ancestor of the cache is searchable by others.
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	c := newTestCache(t, dir, r, nil)
	ctx := context.Background()

	byTag, err := c.Rootfs(ctx, r.ref(t, "tools/bb:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer byTag.Release()
	if byTag.Digest != digest {
		t.Errorf("digest %s, want %s", byTag.Digest, digest)
	}
	checkBusyboxRootfs(t, byTag, "one")

	before := r.totalRequests()
	byDigest, err := c.Rootfs(ctx, r.ref(t, "tools/bb@"+digest))
	if err != nil {
		t.Fatal(err)
	}
	defer byDigest.Release()
	if byDigest.Path != byTag.Path {
		t.Errorf("digest and tag gave different trees: %s, %s", byDigest.Path, byTag.Path)
	}
	if n := r.totalRequests() - before; n != 0 {
		t.Errorf("a cached digest reference made %d registry requests", n)
	}
	if !strings.HasPrefix(byTag.Path, c.opts.Dir) {
		t.Errorf("rootfs %s outside the cache", byTag.Path)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(ents) != 0 {
		t.Errorf("a successful pull left %d entries in tmp", len(ents))
	}
	checkReadableByUnmappedUID(t, byTag)

	// Release is idempotent: a second call does not drop another hold.
	byDigest.Release()
	byDigest.Release()
	c.mu.Lock()
	img, _ := c.images.Peek(digest)
	holds := img.holds
	c.mu.Unlock()
	if holds != 1 {
		t.Errorf("holds = %d after releasing one of two Rootfs twice, want 1", holds)
	}
}

// checkReadableByUnmappedUID runs busybox from the rootfs as an
// unprivileged uid, as the sandbox's user namespace root is on the host:
// the tree must be reachable and its world-readable files readable, and
// nothing in it writable.
func checkReadableByUnmappedUID(t *testing.T, rf *Rootfs) {
	t.Helper()
	requireRoot(t)
	const nobody = 65534
	run := func(args ...string) (string, error) {
		cmd := exec.Command(filepath.Join(rf.Path, "bin/busybox"), args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("cat", filepath.Join(rf.Path, "etc/marker")); err != nil {
		t.Errorf("uid %d cannot read the rootfs: %v: %s", nobody, err, out)
	}
	for _, p := range []string{"etc/marker", "etc/new", "opt/old/x"} {
		if out, err := run("touch", filepath.Join(rf.Path, p)); err == nil {
			t.Errorf("uid %d could write %s: %s", nobody, p, out)
		}
	}
	if _, err := run("cat", filepath.Join(rf.Path, "home/user/file")); err == nil {
		t.Errorf("a file the image made unreadable (0640) was readable by uid %d", nobody)
	}
}

func TestPullVerifiesDigest(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "tools/bb:1", busyboxImage(t, "one"))
	c := newTestCache(t, t.TempDir(), r, nil)
	wrong := "sha256:" + strings.Repeat("0", 64)
	_, err := c.Rootfs(context.Background(), r.ref(t, "tools/bb@"+wrong))
	if err == nil {
		t.Fatal("pull of an unknown digest succeeded")
	}
}

func TestMultiPlatformIndex(t *testing.T) {
	r := newTestRegistry(t)
	mk := func(p string) v1.Image {
		return imageOf(t, p, v1.Config{}, layerOf(t, compression.GZip, file("platform", p, 0o644)))
	}
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: mk("linux/arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: mk("linux/amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	idxDigest := r.pushIndex(t, "multi:latest", idx)

	for _, p := range []string{"linux/amd64", "linux/arm64"} {
		c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.Platform = p })
		for _, ref := range []string{"multi:latest", "multi@" + idxDigest} {
			rf, err := c.Rootfs(context.Background(), r.ref(t, ref))
			if err != nil {
				t.Fatalf("%s %s: %v", p, ref, err)
			}
			if b, _ := os.ReadFile(filepath.Join(rf.Path, "platform")); string(b) != p {
				t.Errorf("%s %s: got image for %q", p, ref, b)
			}
			if rf.Digest == idxDigest {
				t.Errorf("rootfs digest is the index's, want the platform manifest's")
			}
			rf.Release()
		}
		// The index digest is now pinned to the platform's manifest: no I/O.
		before := r.totalRequests()
		rf := r.rootfs(t, c, "multi@"+idxDigest)
		rf.Release()
		if n := r.totalRequests() - before; n != 0 {
			t.Errorf("%s: cached index digest made %d requests", p, n)
		}
	}

	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.Platform = "linux/s390x" })
	_, err := c.Rootfs(context.Background(), r.ref(t, "multi:latest"))
	if err == nil || !strings.Contains(err.Error(), "linux/s390x") || !strings.Contains(err.Error(), "linux/arm64") {
		t.Errorf("missing platform: %v", err)
	}
}

// What a tag or an index digest stands for is kept per platform: an
// outside probe seeded a cache with images pull --platform linux/arm64,
// and the runner, on linux/amd64, then ran actions naming the index (or
// its tag) in the arm64 image. A record written before keys named a
// platform is taken as the current platform's, and rewritten.
func TestResolutionsAreKeptPerPlatform(t *testing.T) {
	r := newTestRegistry(t)
	mk := func(p string) v1.Image {
		return imageOf(t, p, v1.Config{}, layerOf(t, compression.GZip, file("platform", p, 0o644)))
	}
	idxDigest := r.pushIndex(t, "multi:latest", mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: mk("linux/arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: mk("linux/amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	))
	dir := t.TempDir()
	platformOf := func(c *Cache, ref string) string {
		t.Helper()
		rf, err := c.Rootfs(context.Background(), r.ref(t, ref))
		if err != nil {
			t.Fatalf("%s: %v", ref, err)
		}
		defer rf.Release()
		b, _ := os.ReadFile(filepath.Join(rf.Path, "platform"))
		return string(b)
	}
	for _, p := range []string{"linux/arm64", "linux/amd64", "linux/arm64"} {
		c := newTestCache(t, dir, r, func(o *Options) { o.Platform = p })
		for _, ref := range []string{"multi@" + idxDigest, "multi:latest"} {
			if got := platformOf(c, ref); got != p {
				t.Errorf("a cache for %s, seeded for the others: %s is the image for %q", p, ref, got)
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// A record of the index's pick without a platform in its key, as
	// caches wrote it before: the current platform's.
	c := newTestCache(t, dir, r, func(o *Options) { o.Platform = "linux/amd64" })
	key := c.indexKey(idxDigest)
	rec := c.refs[key]
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(st.refPath(key)); err != nil {
		t.Fatal(err)
	}
	rec.Key = idxDigest
	if err := st.writeRef(rec); err != nil {
		t.Fatal(err)
	}
	st.close()
	c = newTestCache(t, dir, r, func(o *Options) { o.Platform = "linux/amd64" })
	before := r.totalRequests()
	if got := platformOf(c, "multi@"+idxDigest); got != "linux/amd64" || r.totalRequests() != before {
		t.Errorf("an old record: the image for %q after %d requests, want linux/amd64 from the record", got, r.totalRequests()-before)
	}
	if _, err := os.Stat(st.refPath(idxDigest)); !os.IsNotExist(err) {
		t.Errorf("the old record is still there (%v)", err)
	}
}

func TestRegistryCredentials(t *testing.T) {
	r := newTestRegistry(t)
	r.requireAuth("alice", "s3cret")
	r.push(t, "private:1", busyboxImage(t, "private"))
	ref := r.ref(t, "private:1")

	for name, mod := range map[string]func(*Options){
		"worker config": func(o *Options) {
			o.Registries = map[string]Credentials{r.Host: {Username: "alice", Password: "s3cret"}}
		},
		"docker config": func(o *Options) { o.DockerConfig = dockerConfigFile(t, r.Host, "alice", "s3cret") },
	} {
		c := newTestCache(t, t.TempDir(), r, mod)
		rf, err := c.Rootfs(context.Background(), ref)
		if err != nil {
			t.Errorf("%s: right credentials refused: %v", name, err)
			continue
		}
		checkBusyboxRootfs(t, rf, "private")
		rf.Release()
	}
	for name, mod := range map[string]func(*Options){
		"wrong password": func(o *Options) { o.Registries = map[string]Credentials{r.Host: {Username: "alice", Password: "nope"}} },
		"none":           nil,
	} {
		c := newTestCache(t, t.TempDir(), r, mod)
		if _, err := c.Rootfs(context.Background(), ref); err == nil || !strings.Contains(err.Error(), "UNAUTHORIZED") {
			t.Errorf("%s: want an UNAUTHORIZED error, got %v", name, err)
		}
	}
}

func TestPlainHTTPOnlyWhenConfigured(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "bb:1", busyboxImage(t, "x"))
	c := newTestCache(t, t.TempDir(), nil, nil) // r.Host not in Insecure
	before := r.totalRequests()
	_, err := c.Rootfs(context.Background(), r.ref(t, "bb:1"))
	if err == nil || !strings.Contains(err.Error(), "plain HTTP") {
		t.Fatalf("want plain HTTP refused, got %v", err)
	}
	if n := r.totalRequests() - before; n != 0 {
		t.Errorf("%d requests reached the registry over HTTP", n)
	}
}

func TestRetriesTransientErrors(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "bb:1", busyboxImage(t, "retry"))
	r.mu.Lock()
	r.fail503 = 2
	r.mu.Unlock()
	c := newTestCache(t, t.TempDir(), r, nil)
	rf, err := c.Rootfs(context.Background(), r.ref(t, "bb:1"))
	if err != nil {
		t.Fatalf("pull with two 503s: %v", err)
	}
	rf.Release()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail503 != 0 {
		t.Errorf("the registry's 503s were not hit (%d left)", r.fail503)
	}
}

func TestConcurrentPullsDownloadOnce(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "bb:1", busyboxImage(t, "conc"))
	base, _ := r.counts()
	reg := prometheus.NewRegistry()
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.Metrics = reg })

	const n = 8
	var wg sync.WaitGroup
	start := make(chan struct{})
	results := make([]*Rootfs, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i], errs[i] = c.Rootfs(context.Background(), r.ref(t, "bb:1"))
		}()
	}
	close(start)
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if results[i].Path != results[0].Path {
			t.Errorf("caller %d got %s, caller 0 %s", i, results[i].Path, results[0].Path)
		}
		defer results[i].Release()
	}
	blobs, _ := r.counts()
	fetched := 0
	for p, k := range blobs {
		k -= base[p]
		if k > 1 {
			t.Errorf("blob %s downloaded %d times", p, k)
		}
		fetched += k
	}
	if fetched != 3 { // config and two layers
		t.Errorf("%d blobs downloaded, want 3", fetched)
	}
	if got := metricValue(t, reg, "paddock_images_layers_unpacked_total"); got != 2 {
		t.Errorf("layers unpacked metric = %v, want 2", got)
	}
	if got := metricValue(t, reg, "paddock_images_pulls_total", "result", "ok"); got != 1 {
		t.Errorf("pulls ok metric = %v, want 1", got)
	}
	if got := metricValue(t, reg, "paddock_images_in_use"); got != 1 {
		t.Errorf("images in use = %v, want 1", got)
	}
	if got := metricValue(t, reg, "paddock_images_pulled_bytes_total"); got < float64(len(busybox(t)))/4 {
		t.Errorf("pulled bytes = %v, implausibly small", got)
	}
}

func TestWarmRestartDownloadsNothing(t *testing.T) {
	r := newTestRegistry(t)
	digest := r.push(t, "bb:1", busyboxImage(t, "warm"))
	dir := t.TempDir()
	c := newTestCache(t, dir, r, nil)
	rf := r.rootfs(t, c, "bb:1")
	rf.Release()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Debris a crash mid-unpack would leave, and a layer directory that was
	// never completed.
	if err := os.MkdirAll(filepath.Join(dir, "tmp/work-123/root/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	bogus := filepath.Join(dir, "layers", strings.Repeat("e", 64))
	if err := os.MkdirAll(filepath.Join(bogus, "root"), 0o755); err != nil {
		t.Fatal(err)
	}

	before := r.totalRequests()
	c2 := newTestCache(t, dir, r, nil)
	for _, ref := range []string{"bb:1", "bb@" + digest} {
		rf, err := c2.Rootfs(context.Background(), r.ref(t, ref))
		if err != nil {
			t.Fatal(err)
		}
		checkBusyboxRootfs(t, rf, "warm")
		rf.Release()
	}
	if n := r.totalRequests() - before; n != 0 {
		t.Errorf("warm restart made %d registry requests", n)
	}
	// What tmp held at start is moved aside and deleted in the background
	// (the cache opens without waiting for it, cf4994f): wait for that.
	waitUntil(t, "tmp is cleared of what the previous run left", func() bool {
		ents, err := os.ReadDir(filepath.Join(dir, "tmp"))
		return err == nil && len(ents) == 0
	})
	if _, err := os.Stat(bogus); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("incomplete layer directory kept: %v", err)
	}
}

func TestOneCachePerDirectory(t *testing.T) {
	dir := t.TempDir()
	newTestCache(t, dir, nil, nil)
	if _, err := New(Options{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second cache on one directory: %v", err)
	}
}

func TestPullTimeout(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "bb:1", busyboxImage(t, "slow"))
	_, release := r.stallBlobs()
	defer release()
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.PullTimeout = 200 * time.Millisecond })
	_, err := c.Rootfs(context.Background(), r.ref(t, "bb:1"))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the pull to time out, got %v", err)
	}
}

func TestMountPoints(t *testing.T) {
	r := newTestRegistry(t)
	parent, cacheDir := hostileSetup(t)
	r.push(t, "mp:1", imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip,
		dir("proc"), symlink("tmp", filepath.Join(parent, "outside")), file("sys", "not a dir", 0o644))))
	c := newTestCache(t, cacheDir, r, nil)
	rf := r.rootfs(t, c, "mp:1")
	defer rf.Release()
	if st, err := os.Lstat(filepath.Join(rf.Path, "dev")); err != nil || !st.IsDir() {
		t.Errorf("missing mount point /dev not made: %v", err)
	}
	if st, err := os.Lstat(filepath.Join(rf.Path, "tmp")); err != nil || st.Mode()&os.ModeSymlink == 0 {
		t.Errorf("/tmp symlink from the image should be left alone: %v", err)
	}
	if err := rf.MkdirMountPoint("/b/f/work"); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(rf.Path, "b/f/work")); err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
		t.Errorf("action mount point: %v, %v", st, err)
	}
	for _, p := range []string{"/tmp/x", "/sys/x", "/../../x"} {
		if err := rf.MkdirMountPoint(p); err == nil {
			t.Errorf("MkdirMountPoint(%s) accepted", p)
		}
	}
	assertOutsideUntouched(t, parent)
}
