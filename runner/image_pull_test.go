package runner

import (
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images/imagetest"
)

// stallingRegistry is go-containerregistry's in-process registry on
// loopback that, once stall is called, answers GETs of one blob with its
// headers and the start of its body, and then nothing until the request
// ends (which ended counts).
type stallingRegistry struct {
	Host string

	mu       sync.Mutex
	stalling string // "/blobs/<digest>"
	ended    int
}

func serveStalling(t *testing.T) *stallingRegistry {
	r := &stallingRegistry{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		stall := r.stalling != "" && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, r.stalling)
		r.mu.Unlock()
		if stall {
			reg.ServeHTTP(&stallingWriter{ResponseWriter: w, wait: func() {
				<-req.Context().Done()
				r.mu.Lock()
				r.ended++
				r.mu.Unlock()
			}}, req)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// stallingWriter sends the first half of the first write, and then waits.
type stallingWriter struct {
	http.ResponseWriter
	wait func()
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p[:len(p)/2])
	w.ResponseWriter.(http.Flusher).Flush()
	if err == nil {
		w.wait()
		err = errors.New("request ended")
	}
	return n, err
}

func (r *stallingRegistry) stall(blob v1.Hash) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stalling = "/blobs/" + blob.String()
}

func (r *stallingRegistry) endedRequests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ended
}

// imageEnv is a test runner with an image cache that may use host over
// plain HTTP.
func imageEnv(t *testing.T, host string) (*testEnv, string) {
	base := searchableTempDir(t)
	cacheDir := filepath.Join(base, "images")
	e := newTestEnvIn(t, base, func(c *Config) {
		c.Images.Dir = cacheDir
		c.Images.Insecure = []string{host}
	})
	return e, cacheDir
}

// runOn runs args on image, with the action's timeout if not zero.
func runOn(t *testing.T, e *testEnv, image string, timeout time.Duration, args ...string) *runnerpb.RunResponse {
	t.Helper()
	a := e.newAction(t)
	req := a.request(args...)
	req.Platform = []*runnerpb.Property{{Name: "container-image", Value: image}}
	if timeout > 0 {
		req.Timeout = durationpb.New(timeout)
	}
	return e.run(t, req)
}

// The action's timeout covers its image's pull: a registry that stalls
// mid-blob ends the action at its timeout with DEADLINE_EXCEEDED naming
// the image, and the download and its work directory go with it. Before,
// the pull went on under the cache's 30-minute PullTimeout, the runner's
// answer with it, and the scheduler gave up at the timeout and its grace
// with a message that did not name the image.
func TestImagePullIsWithinTheActionsTimeout(t *testing.T) {
	requireRoot(t)
	reg := serveStalling(t)
	img := imagetest.MarkerImage(t, "linux/amd64", v1.Config{}, "slow\n")
	image := imagetest.Push(t, reg.Host, "slow/bb:1", img)
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	layer, err := layers[0].Digest()
	if err != nil {
		t.Fatal(err)
	}
	reg.stall(layer)
	e, cacheDir := imageEnv(t, reg.Host)

	start := time.Now()
	resp := runOn(t, e, image, 2*time.Second, "/bin/busybox", "true")
	if took := time.Since(start); codes.Code(resp.StatusCode) != codes.DeadlineExceeded || !resp.TimedOut ||
		!strings.Contains(resp.StatusMessage, image) || took > 30*time.Second {
		t.Fatalf("after %s: %v %q (timed_out %v); want DEADLINE_EXCEEDED naming %s soon after the 2s timeout",
			took, codes.Code(resp.StatusCode), resp.StatusMessage, resp.TimedOut, image)
	}
	waitFor(t, "the download to end", func() bool { return reg.endedRequests() > 0 })
	waitFor(t, "the work directory to be removed", func() bool {
		m, _ := filepath.Glob(filepath.Join(cacheDir, "tmp", "work-*"))
		return len(m) == 0
	})
}

// What a failed pull tells the client is bounded, whatever the image or
// the registry said: a config's "os" of 7 MB made a reply larger than
// gRPC allows, which the worker took for a runner failure (the action
// was retried four times, pulling each time, and ended UNAVAILABLE).
func TestPullFailureMessagesAreBounded(t *testing.T) {
	var diags []transport.Diagnostic
	for range 1000 {
		diags = append(diags, transport.Diagnostic{Code: transport.ErrorCode(strings.Repeat("C", 1000))})
	}
	for name, err := range map[string]error{
		"an images error": errors.New(strings.Repeat("é", 1<<20)),
		"registry codes":  &transport.Error{StatusCode: http.StatusBadRequest, Errors: diags},
	} {
		msg := pullFailure("docker://registry.example/x:1", err).Error()
		if len(msg) > maxPullErrorMessage+200 || !strings.Contains(msg, "docker://registry.example/x:1") {
			t.Errorf("%s: a message of %d bytes: %.200s...", name, len(msg), msg)
		}
	}

	requireRoot(t)
	host := imagetest.Serve(t)
	img := imagetest.MarkerImage(t, "linux/amd64", v1.Config{}, "os\n")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS = strings.Repeat("x", 7<<20)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	image := imagetest.Push(t, host, "os/bb:1", img)
	e, _ := imageEnv(t, host)
	resp := runOn(t, e, image, 0, "/bin/busybox", "true")
	if codes.Code(resp.StatusCode) != codes.FailedPrecondition || len(resp.StatusMessage) > maxPullErrorMessage+200 ||
		!strings.Contains(resp.StatusMessage, "not linux") {
		t.Fatalf("got %v and a message of %d bytes: %.300s...; want FAILED_PRECONDITION saying the image is not for linux, briefly",
			codes.Code(resp.StatusCode), len(resp.StatusMessage), resp.StatusMessage)
	}
}

// An image whose /tmp, /proc or /sys is not a directory, or whose /dev
// is a file, cannot have the sandbox's filesystems mounted on it: that is
// the image's fault (FAILED_PRECONDITION naming the path), as at the
// input root path, not an internal failure to set up the sandbox.
func TestImageMountPointsMustBeDirectories(t *testing.T) {
	requireRoot(t)
	host := imagetest.Serve(t)
	e, _ := imageEnv(t, host)
	// sys/firmware and sys/devices/virtual/powercap are masked: a symlink
	// there got INTERNAL.
	for _, p := range []string{"tmp", "proc", "sys", "dev", "sys/firmware", "sys/devices/virtual/powercap"} {
		t.Run(p, func(t *testing.T) {
			fault := []imagetest.Entry{imagetest.Symlink(p, "/etc")}
			if p == "dev" {
				fault = []imagetest.Entry{imagetest.File(p, "not a directory", 0o644)}
			}
			if strings.HasPrefix(p, "sys/") {
				fault = append([]imagetest.Entry{imagetest.Dir("sys"), imagetest.Dir("sys/devices"), imagetest.Dir("sys/devices/virtual")}, fault...)
			}
			img := imagetest.Image(t, "linux/amd64", v1.Config{}, imagetest.BusyboxLayer(t, nil, append([]imagetest.Entry{imagetest.Dir("etc")}, fault...)...))
			image := imagetest.Push(t, host, "faulty/"+strings.ReplaceAll(p, "/", "-")+":1", img)
			resp := runOn(t, e, image, 0, "/bin/busybox", "true")
			if codes.Code(resp.StatusCode) != codes.FailedPrecondition || !strings.Contains(resp.StatusMessage, "/"+p) ||
				!strings.Contains(resp.StatusMessage, image) {
				t.Fatalf("got %v %q; want FAILED_PRECONDITION naming %s and /%s", codes.Code(resp.StatusCode), resp.StatusMessage, image, p)
			}
		})
	}
}
