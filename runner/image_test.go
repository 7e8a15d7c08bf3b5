package runner

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// tarEntry is one entry of a test layer (as in the images tests).
type tarEntry struct {
	name, body, link string
	typ              byte
	mode             int64
}

func layerOf(t testing.TB, entries ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.body)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// pushBusyboxImage serves a one-layer image with Debian's static busybox,
// a passwd naming user "builder", Env and User set, on an in-process
// registry on loopback, and returns its container-image value.
func pushBusyboxImage(t testing.TB) (ref, host string) {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs a static busybox at /bin/busybox (apt-get install busybox-static): %v", err)
	}
	srv := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(srv.Close)
	host = strings.TrimPrefix(srv.URL, "http://")
	layer := layerOf(t,
		tarEntry{name: "bin", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "bin/busybox", typ: tar.TypeReg, mode: 0o755, body: string(bb)},
		tarEntry{name: "bin/sh", typ: tar.TypeSymlink, mode: 0o777, link: "busybox"},
		tarEntry{name: "etc", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "etc/passwd", typ: tar.TypeReg, mode: 0o644, body: "root:x:0:0::/root:/bin/sh\nbuilder:x:1500:1600::/home/builder:/bin/sh\n"},
		tarEntry{name: "etc/image-marker", typ: tar.TypeReg, mode: 0o644, body: "from the image\n"},
	)
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config = v1.Config{Env: []string{"PATH=/bin", "IMAGE_VAR=1"}, User: "builder", WorkingDir: "/ignored"}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r, err := name.ParseReference(host + "/test/bb:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push: %v", err)
	}
	return "docker://" + host + "/test/bb:1", host
}

// TestContainerImage: with container-image the action runs in the image's
// rootfs (its files, not the host's), as the image's user, with exactly
// the Command's environment (the image's Env is not merged by default),
// and its outputs land in the input root owned by that user's host uid.
func TestContainerImage(t *testing.T) {
	requireRoot(t)
	ref, host := pushBusyboxImage(t)
	if _, err := os.Stat("/etc/os-release"); err != nil {
		t.Skip("the host has no /etc/os-release to tell it from the image")
	}
	base := searchableTempDir(t)
	e := newTestEnvIn(t, base, func(c *Config) {
		c.Images.Dir = filepath.Join(base, "images")
		c.Images.Insecure = []string{host}
	})
	props := []*runnerpb.Property{{Name: "container-image", Value: ref}, {Name: "OSFamily", Value: "Linux"}}

	a := e.newAction(t)
	req := a.request("/bin/busybox", "env")
	req.EnvironmentVariables = []*runnerpb.EnvironmentVariable{{Name: "ONLY", Value: "this"}}
	req.Platform = props
	mustSucceed(t, a, e.run(t, req))
	if out, _ := a.output(t); out != "ONLY=this\n" {
		t.Errorf("environment in the image = %q, want exactly the Command's", out)
	}

	b := e.newAction(t)
	req = b.request("/bin/busybox", "sh", "-c",
		`/bin/busybox test -e /etc/os-release && echo host-os-release; /bin/busybox cat /etc/image-marker; /bin/busybox id -u; /bin/busybox id -g; /bin/busybox pwd; echo made > out`)
	req.Platform = props
	mustSucceed(t, b, e.run(t, req))
	if out, stderr := b.output(t); out != "from the image\n1500\n1600\n/work\n" {
		t.Errorf("in the image: stdout %q stderr %q; want the image's files, its user builder (1500:1600), cwd /work", out, stderr)
	}
	st, err := os.Stat(filepath.Join(b.root, "out"))
	if err != nil {
		t.Fatalf("output from the image's sandbox: %v", err)
	}
	if got := st.Sys().(*syscall.Stat_t); got.Uid != testIDBase+1500 || got.Gid != testIDBase+1600 {
		t.Errorf("output owned by %d:%d, want %d:%d", got.Uid, got.Gid, testIDBase+1500, testIDBase+1600)
	}

	// The same command on the host's root sees the host's files instead.
	c := e.newAction(t)
	mustSucceed(t, c, e.run(t, c.request("/bin/sh", "-c", "test -e /etc/os-release && echo host-os-release; test -e /etc/image-marker && echo image-marker; exit 0")))
	if out, _ := c.output(t); out != "host-os-release\n" {
		t.Errorf("on the host's root: %q", out)
	}
}
