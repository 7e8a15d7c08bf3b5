package runner

import (
	"archive/tar"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images/imagetest"
)

// An image sandbox has the runner's /etc/hosts, read-only, naming
// localhost, whether the image lacks one (the usual case: Docker writes
// it at run time, so images seldom ship it), lacks /etc altogether, or
// ships its own (as Docker, ours is mounted over it). An image whose
// /etc/hosts is not a regular file keeps what it made. Without it an
// outside probe found localhost resolving nowhere in an image.
func TestImageSandboxHasAnEtcHosts(t *testing.T) {
	requireRoot(t)
	host := imagetest.Serve(t)
	base := searchableTempDir(t)
	e := newTestEnvIn(t, base, func(c *Config) {
		c.Images.Dir = filepath.Join(base, "images")
		c.Images.Insecure = []string{host}
	})
	shell := []string{"sh", "cat", "test"}
	for _, c := range []struct {
		name  string
		extra []imagetest.Entry
		want  string
	}{
		{"no /etc/hosts", []imagetest.Entry{imagetest.Dir("etc")}, hostsContent},
		{"no /etc", nil, hostsContent},
		{"its own /etc/hosts", []imagetest.Entry{imagetest.Dir("etc"), imagetest.File("etc/hosts", "10.0.0.1 image-own\n", 0o644)}, hostsContent},
		{"a symlink", []imagetest.Entry{imagetest.Dir("etc"), imagetest.File("etc/hosts.real", "10.0.0.2 via-link\n", 0o644), imagetest.Symlink("etc/hosts", "hosts.real")}, "10.0.0.2 via-link\n"},
		// The sandbox cannot search it to mount there: the action runs
		// without (and cannot read the image's own).
		{"an /etc only its owner searches", []imagetest.Entry{{Name: "etc", Type: tar.TypeDir, Mode: 0o700}, imagetest.File("etc/hosts", "10.0.0.3 private\n", 0o644)}, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			img := imagetest.Image(t, "linux/amd64", v1.Config{}, imagetest.BusyboxLayer(t, shell, c.extra...))
			ref := imagetest.Push(t, host, "test/hosts:"+strings.ReplaceAll(strings.ReplaceAll(c.name, " ", "-"), "/", ""), img)
			a := e.newAction(t)
			req := a.request("/bin/sh", "-c", "cat /etc/hosts; echo x >> /etc/hosts && echo WROTE; exit 0")
			req.Platform = []*runnerpb.Property{{Name: "container-image", Value: ref}}
			mustSucceed(t, a, e.run(t, req))
			out, stderr := a.output(t)
			if out != c.want {
				t.Errorf("/etc/hosts in the sandbox: %q (stderr %q), want %q", out, stderr, c.want)
			}
		})
	}
}
