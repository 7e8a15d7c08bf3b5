package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/images/imagetest"
)

// TestPrivateImagesPerTenant: `paddock up` over TLS with an auth policy
// of two tenants, and per-tenant registry credentials in the runner's
// config, against a registry (in this process, on loopback) that wants
// basic auth for its private repository. Tenant alpha runs an action on
// the private image; tenant beta, without credentials, is refused with
// PERMISSION_DENIED naming the image although the image is cached on the
// worker; a public image serves both; once beta's own credentials are in
// its file, beta runs on the private image from the cache.
func TestPrivateImagesPerTenant(t *testing.T) {
	needPaddock(t)
	reg := imagetest.ServePrivate(t)
	reg.Allow("alpha-robot", "alpha-pass")
	platform := "linux/" + runtime.GOARCH
	private := reg.Push(t, "private/toolchain:1", imagetest.MarkerImage(t, platform, v1.Config{}, "private toolchain\n"))
	public := reg.Push(t, "public/base:1", imagetest.MarkerImage(t, platform, v1.Config{}, "public base\n"))

	p := newSecurePKI(t)
	alphaToken, betaToken := rand.Text(), rand.Text()
	h := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	policy := filepath.Join(p.ca.Dir, "tenants.yaml")
	writeFile(t, policy, fmt.Sprintf(`tenants:
  - name: alpha
    instance_prefixes: [alpha]
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
  - name: beta
    instance_prefixes: [beta]
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
`, h(alphaToken), h(betaToken)), 0o600)
	creds := t.TempDir()
	alphaCreds, betaCreds := filepath.Join(creds, "alpha.json"), filepath.Join(creds, "beta.json")
	writeFile(t, alphaCreds, reg.DockerConfig("alpha-robot", "alpha-pass"), 0o600)
	writeFile(t, betaCreds, `{"auths":{}}`, 0o600)
	runnerCfg := filepath.Join(searchableTempDir(t), "runner.yaml")
	writeFile(t, runnerCfg, fmt.Sprintf("version: 1\nimages:\n  insecure: [%q]\n  tenants:\n    alpha: {docker_config: %s}\n    beta: {docker_config: %s}\n",
		reg.Host, alphaCreds, betaCreds), 0o644)
	f := startUp(t, "", "--tls-cert", p.server.Cert, "--tls-key", p.server.Key, "--auth", policy, "--runner-config", runnerCfg)

	tenant := func(token, instance string) *client {
		cfg, err := auth.ClientTLS(auth.TLSFiles{CA: p.ca.Cert}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
			grpc.WithPerRPCCredentials(auth.NewTokenCredentials(token)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return &client{t: t, cas: repb.NewContentAddressableStorageClient(conn), exec: repb.NewExecutionClient(conn), instance: instance}
	}
	alpha, beta := tenant(alphaToken, "alpha"), tenant(betaToken, "beta")
	on := func(image string) action {
		return action{cmd: &repb.Command{Arguments: []string{"/bin/busybox", "cat", "/etc/marker"}},
			platform: []*repb.Platform_Property{{Name: "container-image", Value: image}}, doNotCache: true}
	}
	ranOn := func(c *client, who, image, want string) {
		t.Helper()
		if _, stdout, _ := c.run(t.Context(), on(image)); stdout != want {
			t.Errorf("%s on %s: stdout %q, want %q", who, image, stdout, want)
		}
	}

	ranOn(alpha, "alpha", private, "private toolchain\n")
	resp, err := beta.execute(t.Context(), beta.prepare(t.Context(), on(private)), true)
	if err != nil {
		t.Fatal(err)
	}
	st := status.FromProto(resp.Status)
	t.Logf("beta without credentials: %v", st)
	if st.Code() != codes.PermissionDenied || !strings.Contains(st.Message(), private) {
		t.Fatalf("beta on alpha's cached private image: %v, want PERMISSION_DENIED naming %s", st, private)
	}
	if strings.Contains(st.Message(), "alpha-pass") || strings.Contains(st.Message(), creds) {
		t.Errorf("the refusal shows a secret or a host path: %q", st.Message())
	}

	ranOn(alpha, "alpha", public, "public base\n")
	ranOn(beta, "beta, no credentials", public, "public base\n")

	_, blobs := reg.Reads()
	reg.Allow("beta-robot", "beta-pass")
	writeFile(t, betaCreds, reg.DockerConfig("beta-robot", "beta-pass"), 0o600)
	ranOn(beta, "beta, its own credentials", private, "private toolchain\n")
	if _, after := reg.Reads(); after != blobs {
		t.Errorf("beta's run downloaded %d blobs: want the worker's cached image", after-blobs)
	}
	f.shutdown()
}
