package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images/imagetest"
)

// TestPrivateImagePerTenant runs real sandboxes on images from a registry
// that wants basic auth for its private repository: tenant a (with
// credentials) runs an action on the private image; tenant b, without
// credentials and then with wrong ones, is refused with PERMISSION_DENIED
// although the image is cached on this runner; b with its own valid
// credentials runs on it; a public image pulled by a serves everyone.
func TestPrivateImagePerTenant(t *testing.T) {
	requireRoot(t)
	reg := imagetest.ServePrivate(t)
	reg.Allow("alice", "a-secret")
	private := reg.Push(t, "private/toolchain:1", imagetest.MarkerImage(t, "linux/amd64", v1.Config{}, "private toolchain\n"))
	public := reg.Push(t, "public/base:1", imagetest.MarkerImage(t, "linux/amd64", v1.Config{}, "public base\n"))

	base := searchableTempDir(t)
	creds := t.TempDir()
	aFile, bFile := filepath.Join(creds, "a.json"), filepath.Join(creds, "b.json")
	write := func(p, body string) {
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(aFile, reg.DockerConfig("alice", "a-secret"))
	write(bFile, `{"auths":{}}`)
	e := newTestEnvIn(t, base, func(c *Config) {
		c.Images.Dir = filepath.Join(base, "images")
		c.Images.Insecure = []string{reg.Host}
		c.Images.Tenants = map[string]TenantImagesConfig{"a": {DockerConfig: aFile}, "b": {DockerConfig: bFile}}
	})
	run := func(tenant, image string) (*action, *runnerpb.RunResponse) {
		t.Helper()
		a := e.newAction(t)
		req := a.request("/bin/busybox", "cat", "/etc/marker")
		req.Platform = []*runnerpb.Property{{Name: "container-image", Value: image}}
		req.Tenant = tenant
		return a, e.run(t, req)
	}
	ranOn := func(tenant, image, want string) {
		t.Helper()
		a, resp := run(tenant, image)
		mustSucceed(t, a, resp)
		if out, _ := a.output(t); out != want {
			t.Errorf("tenant %q on %s: stdout %q, want %q", tenant, image, out, want)
		}
	}
	refused := func(tenant, why string) {
		t.Helper()
		_, resp := run(tenant, private)
		if codes.Code(resp.StatusCode) != codes.PermissionDenied {
			t.Fatalf("tenant %q (%s): status %v %q, want PERMISSION_DENIED", tenant, why, codes.Code(resp.StatusCode), resp.StatusMessage)
		}
		if !strings.Contains(resp.StatusMessage, private) || strings.Contains(resp.StatusMessage, "secret") {
			t.Errorf("refusal should name the image and no secret: %q", resp.StatusMessage)
		}
	}

	ranOn("a", private, "private toolchain\n")
	_, blobs := reg.Reads()
	refused("b", "no credentials")
	refused("", "no tenant: the farm-wide credentials, none")
	write(bFile, reg.DockerConfig("bob", "guess"))
	refused("b", "wrong credentials")
	reg.Allow("bob", "b-secret")
	write(bFile, reg.DockerConfig("bob", "b-secret"))
	ranOn("b", private, "private toolchain\n")
	if _, after := reg.Reads(); after != blobs {
		t.Errorf("b's run downloaded %d blobs again; the cached image should have served it", after-blobs)
	}

	ranOn("a", public, "public base\n")
	for _, tenant := range []string{"b", "c", ""} {
		ranOn(tenant, public, "public base\n")
	}
}
