package runner

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images/imagetest"
)

// pushBusyboxImage serves a one-layer image with Debian's static busybox,
// a passwd naming user "builder", Env and User set, on an in-process
// registry on loopback, and returns its container-image value.
func pushBusyboxImage(t testing.TB) (ref, host string) {
	t.Helper()
	host = imagetest.Serve(t)
	layer := imagetest.BusyboxLayer(t, []string{"sh"},
		imagetest.Dir("etc"),
		imagetest.File("etc/passwd", "root:x:0:0::/root:/bin/sh\nbuilder:x:1500:1600::/home/builder:/bin/sh\n", 0o644),
		imagetest.File("etc/image-marker", "from the image\n", 0o644),
	)
	img := imagetest.Image(t, "linux/amd64", v1.Config{Env: []string{"PATH=/bin", "IMAGE_VAR=1"}, User: "builder", WorkingDir: "/ignored"}, layer)
	return imagetest.Push(t, host, "test/bb:1", img), host
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
