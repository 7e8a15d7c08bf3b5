package e2e

import (
	"archive/tar"
	"bytes"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestContainerImage: an action whose container-image names an image in a
// registry (in this process, on loopback) runs in that image's rootfs, not
// the host's: it sees the image's files and none of the host's.
func TestContainerImage(t *testing.T) {
	needPaddock(t)
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("needs Debian's static busybox at /bin/busybox (apt-get install busybox-static): %v", err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")

	// A one-layer image: busybox, the shell and cat as its applets, and a
	// marker file.
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	add := func(h *tar.Header, body []byte) {
		h.ModTime, h.Size = time.Unix(1700000000, 0), int64(len(body))
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write(body)
	}
	add(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755}, bb)
	for _, applet := range []string{"sh", "cat", "ls"} {
		add(&tar.Header{Name: "bin/" + applet, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	}
	add(&tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	add(&tar.Header{Name: "etc/marker", Typeflag: tar.TypeReg, Mode: 0o644}, []byte("from the image\n"))
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Env: []string{"PATH=/bin"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/e2e/busybox:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}

	// The runner may pull from this registry over plain HTTP.
	cfgPath := filepath.Join(searchableTempDir(t), "runner.yaml")
	if err := os.WriteFile(cfgPath, []byte("images:\n  insecure: [\""+host+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startUp(t, "", "--runner-config", cfgPath)
	c := newClient(t, f.addr)
	cmd := &repb.Command{
		Arguments:            []string{"/bin/sh", "-c", "cat /etc/marker; ls /; test -e /usr/bin/gcc && echo host gcc visible; true"},
		EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "PATH", Value: "/bin"}},
	}
	image := []*repb.Platform_Property{{Name: "container-image", Value: "docker://" + host + "/e2e/busybox:1"}}
	_, stdout, stderr := c.run(t.Context(), action{cmd: cmd, platform: image, doNotCache: true})
	t.Logf("in the image: stdout %q, stderr %q", stdout, stderr)
	if !strings.HasPrefix(stdout, "from the image\n") {
		t.Errorf("the action did not see the image's /etc/marker: stdout %q, stderr %q", stdout, stderr)
	}
	if strings.Contains(stdout, "host gcc visible") || strings.Contains(stdout, "usr") {
		t.Errorf("the action in the image sees the host's root: stdout %q", stdout)
	}
	f.shutdown()
}
