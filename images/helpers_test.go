package images

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paddock-build/paddock/images/imagetest"
	"github.com/paddock-build/paddock/internal/testlog"
)

// testRegistry is go-containerregistry's in-process registry on loopback,
// wrapped to count requests and optionally demand basic auth or fail.
type testRegistry struct {
	Host string
	srv  *httptest.Server

	mu           sync.Mutex
	blobGets     map[string]int // path → GET count
	manifests    int            // GET/HEAD of manifests
	manifestGets int
	user         string
	pass         string
	fail503      int // fail this many blob GETs with 503 first
	// While stall is non-nil, blob GETs (those stallOnly matches, if set)
	// signal stalled and then wait for stall to close or the request to
	// end, which abandoned counts. With stallBody they send their
	// headers and the start of the body first.
	stall     chan struct{}
	stalled   chan struct{}
	stallOnly func(path string) bool
	stallBody bool
	abandoned int
}

func newTestRegistry(t testing.TB) *testRegistry {
	r := &testRegistry{blobGets: map[string]int{}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		if r.user != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != r.user || p != r.pass {
				r.mu.Unlock()
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
				return
			}
		}
		isBlobGet := req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:")
		if isBlobGet && r.fail503 > 0 {
			r.fail503--
			r.mu.Unlock()
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		if isBlobGet && r.stall != nil && (r.stallOnly == nil || r.stallOnly(req.URL.Path)) {
			stall, stalled, inBody := r.stall, r.stalled, r.stallBody
			r.mu.Unlock()
			wait := func() bool { return r.waitStall(req, stall, stalled) }
			if inBody {
				reg.ServeHTTP(&stallingWriter{ResponseWriter: w, wait: wait}, req)
				return
			}
			if !wait() {
				return
			}
			r.mu.Lock()
		}
		if isBlobGet {
			r.blobGets[req.URL.Path]++
		}
		if strings.Contains(req.URL.Path, "/manifests/") && req.Method != http.MethodPut {
			r.manifests++
			if req.Method == http.MethodGet {
				r.manifestGets++
			}
		}
		r.mu.Unlock()
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(r.srv.Close)
	r.Host = strings.TrimPrefix(r.srv.URL, "http://")
	return r
}

// waitStall signals stalled and waits for stall to close (true) or the
// request to end (false, counted in abandoned).
func (r *testRegistry) waitStall(req *http.Request, stall <-chan struct{}, stalled chan<- struct{}) bool {
	select {
	case stalled <- struct{}{}:
	default:
	}
	select {
	case <-stall:
		return true
	case <-req.Context().Done():
		r.mu.Lock()
		r.abandoned++
		r.mu.Unlock()
		return false
	}
}

// abandonedRequests is how many stalled requests their client gave up.
func (r *testRegistry) abandonedRequests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.abandoned
}

// stallingWriter sends the response's headers and the first bytes of its
// body, then waits (wait) before sending the rest, or fails if wait
// reports the request ended.
type stallingWriter struct {
	http.ResponseWriter
	wait   func() bool
	waited bool
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if w.waited || len(p) < 2 {
		return w.ResponseWriter.Write(p)
	}
	n, err := w.ResponseWriter.Write(p[:len(p)/2])
	if err != nil {
		return n, err
	}
	w.ResponseWriter.(http.Flusher).Flush()
	w.waited = true
	if !w.wait() {
		return n, errors.New("request ended while stalled")
	}
	m, err := w.ResponseWriter.Write(p[n:])
	return n + m, err
}

// stallBlobs makes blob downloads hang until the returned function is
// called; the channel receives when a download is hanging.
func (r *testRegistry) stallBlobs() (<-chan struct{}, func()) {
	return r.stallBlobsWhere(nil, false)
}

// stallBlobsWhere is stallBlobs for the blobs only matches (nil: all),
// stalled in the body if inBody.
func (r *testRegistry) stallBlobsWhere(only func(path string) bool, inBody bool) (<-chan struct{}, func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stallOnly, r.stallBody = only, inBody
	r.stall, r.stalled = make(chan struct{}), make(chan struct{}, 1)
	stall := r.stall
	return r.stalled, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.stall != nil {
			close(stall)
			r.stall = nil
		}
	}
}

// requireAuth makes the registry demand these basic-auth credentials.
func (r *testRegistry) requireAuth(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.user, r.pass = user, pass
}

// counts returns the blob GET counts and manifest requests so far.
func (r *testRegistry) counts() (map[string]int, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]int{}
	for k, v := range r.blobGets {
		m[k] = v
	}
	return m, r.manifests
}

func (r *testRegistry) totalRequests() int {
	b, m := r.counts()
	n := m
	for _, v := range b {
		n += v
	}
	return n
}

func (r *testRegistry) remoteOpts() []remote.Option {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.user == "" {
		return nil
	}
	return []remote.Option{remote.WithAuth(&authn.Basic{Username: r.user, Password: r.pass})}
}

// push writes img to repo:tag and returns its manifest digest.
func (r *testRegistry) push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	return r.write(t, repoTag, img.Digest, func(ref name.Reference) error { return remote.Write(ref, img, r.remoteOpts()...) })
}

// pushIndex is push for an image index.
func (r *testRegistry) pushIndex(t testing.TB, repoTag string, idx v1.ImageIndex) string {
	t.Helper()
	return r.write(t, repoTag, idx.Digest, func(ref name.Reference) error { return remote.WriteIndex(ref, idx, r.remoteOpts()...) })
}

// write pushes with write to repo:tag in this registry and returns the
// digest of what it pushed.
func (r *testRegistry) write(t testing.TB, repoTag string, digest func() (v1.Hash, error), write func(name.Reference) error) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := write(ref); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// rootfs is the rootfs of repo (a repo:tag or repo@digest of this
// registry) from c; the test fails where c cannot give it.
func (r *testRegistry) rootfs(t testing.TB, c *Cache, repo string) *Rootfs {
	t.Helper()
	rf, err := c.Rootfs(context.Background(), r.ref(t, repo))
	if err != nil {
		t.Fatalf("rootfs of %s: %v", repo, err)
	}
	return rf
}

// ref parses a docker:// reference into this registry.
func (r *testRegistry) ref(t testing.TB, repo string) Reference {
	t.Helper()
	ref, none, err := ParseReference("docker://" + r.Host + "/" + repo)
	if err != nil || none {
		t.Fatalf("ParseReference(%s): %v", repo, err)
	}
	return ref
}

// The layer and image builders are shared with the runner and end-to-end
// tests in package imagetest; these short names keep the tables readable.
type entry = imagetest.Entry

var (
	file     = imagetest.File
	dir      = imagetest.Dir
	symlink  = imagetest.Symlink
	hardlink = imagetest.Hardlink
	tarBytes = imagetest.TarBytes
	layerOf  = imagetest.Layer
	imageOf  = imagetest.Image
	busybox  = imagetest.Busybox
)

// busyboxImage is the two-layer image most tests use: busybox and a few
// files (gzip), then a layer (zstd) with a whiteout and an opaque directory.
func busyboxImage(t testing.TB, marker string) v1.Image {
	bb := busybox(t)
	base := layerOf(t, compression.GZip,
		dir("bin"), file("bin/busybox", string(bb), 0o755), symlink("bin/sh", "busybox"),
		dir("etc"), file("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
		file("etc/marker", marker, 0o644),
		dir("opt"), dir("opt/old"), file("opt/old/a.txt", "lower", 0o644),
		entry{Name: "home/user/file", Type: tar.TypeReg, Mode: 0o640, Body: "mine", UID: 1000},
	)
	top := layerOf(t, compression.ZStd,
		dir("etc"), file("etc/.wh.passwd", "", 0o644),
		dir("opt/old"), file("opt/old/.wh..wh..opq", "", 0o644), file("opt/old/new.txt", "upper", 0o644),
	)
	return imageOf(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin", "LANG=C"}, WorkingDir: "/work", User: "1000:1000",
		Entrypoint: []string{"/bin/ignored"}}, base, top)
}

func testLogger(t testing.TB) *slog.Logger {
	return testlog.Logger(t, &slog.HandlerOptions{Level: slog.LevelDebug})
}

// newTestCache opens a cache in dir that may use r over plain HTTP.
func newTestCache(t testing.TB, dir string, r *testRegistry, mod func(*Options)) *Cache {
	t.Helper()
	o := Options{Dir: dir, Platform: "linux/amd64", Logger: testLogger(t)}
	if r != nil {
		o.Insecure = []string{r.Host}
	}
	if mod != nil {
		mod(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // teardown: nothing uses the cache after it
	return c
}

func dockerConfigFile(t testing.TB, host, user, pass string) string {
	p := t.TempDir() + "/config.json"
	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	if err := os.WriteFile(p, []byte(`{"auths":{"`+host+`":{"auth":"`+auth+`"}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// metricValue reads a counter or gauge from the registry, 0 if absent.
// labels are name=value pairs that must all match.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels ...string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					found = found || (lp.GetName() == labels[i] && lp.GetValue() == labels[i+1])
				}
				if !found {
					continue metric
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
