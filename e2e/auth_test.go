package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/internal/bazeltest"
	"github.com/paddock-build/paddock/internal/testpki"
)

// e2ePolicy: the tenant "e2e" (the instance name of remoteFlags) with a
// read-write token, a read-only token and a client certificate, and a
// worker known by its certificate.
func e2ePolicy(rw, ro string) string {
	h := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	return fmt.Sprintf(`tenants:
  - name: e2e
    instance_prefixes: [e2e]
    identities:
      - {name: ci, token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
      - {name: reader, token_sha256: %s, permissions: [cas-read, ac-read]}
      - {name: bazel, certificate: "CN=bazel,O=e2e", permissions: [cas-read, cas-write, ac-read, execute]}
workers:
  - {name: worker, certificate: "spiffe://paddock.test/worker"}
`, h(rw), h(ro))
}

// securePKI is the certificates and policy of a farm behind TLS and auth.
type securePKI struct {
	ca                    *testpki.CA
	server, bazel, worker testpki.Pair
	policy, rw, ro        string
}

func newSecurePKI(t *testing.T) *securePKI {
	t.Helper()
	ca := testpki.NewCA(t, "paddock-e2e-ca")
	p := &securePKI{ca: ca, server: ca.Server("server"),
		bazel:  ca.Client("bazel", pkix.Name{CommonName: "bazel", Organization: []string{"e2e"}}, ""),
		worker: ca.Client("worker", pkix.Name{CommonName: "worker"}, "spiffe://paddock.test/worker"),
		rw:     rand.Text(), ro: rand.Text()}
	p.policy = filepath.Join(ca.Dir, "auth.yaml")
	if err := os.WriteFile(p.policy, []byte(e2ePolicy(p.rw, p.ro)), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// serveFlags are the flags of a role serving TLS with client certificates
// and the policy.
func (p *securePKI) serveFlags() []string {
	return []string{"--tls-cert", p.server.Cert, "--tls-key", p.server.Key, "--tls-client-ca", p.ca.Cert, "--auth", p.policy}
}

// secureFlags turns remoteFlags' plaintext endpoint into TLS verified
// against the test's CA, plus extra credentials.
func secureFlags(flags []string, p *securePKI, extra ...string) []string {
	out := []string{}
	for _, f := range flags {
		out = append(out, strings.Replace(f, "=grpc://", "=grpcs://", 1))
	}
	return append(append(out, "--tls_certificate="+p.ca.Cert), extra...)
}

// TestBazelThroughTLS: Bazel 4.2.3 against `paddock up` serving TLS with
// an auth policy. With a token header it builds everything remotely and,
// after a clean, gets only cache hits; with a client certificate (mTLS)
// the same; with a read-only token and --remote_cache it reads those
// results, and when it runs actions locally its uploads are refused
// without failing the build.
func TestBazelThroughTLS(t *testing.T) {
	needPaddock(t)
	p := newSecurePKI(t)
	b := newBazel(t)
	b.UseTLS()
	f := startUp(t, "", p.serveFlags()...)
	targets := []string{"//:greeting", "//:shout", "//:hello", "//:hello_out"}

	buildTwice := func(name string, creds ...string) string {
		salt := "--action_env=PADDOCK_SALT=" + rand.Text()
		flags := append(secureFlags(b.remoteFlags(f.addr), p, creds...), salt)
		b.Run(0, "clean")
		out := b.Run(0, "build", append(flags, targets...)...)
		first := bazeltest.ProcessSummary(t, out)
		t.Logf("%s, first build: %v", name, first)
		// The salt changes the genrules; the C++ actions may be cache hits
		// of an earlier build.
		if first["remote"] < 3 || !onlyKinds(first, "remote", "remote cache hit", "internal") {
			t.Errorf("%s: first build %v, want the genrules executed remotely and nothing local\n%s", name, first, out)
		}
		b.Run(0, "clean")
		out = b.Run(0, "build", append(flags, targets...)...)
		again := bazeltest.ProcessSummary(t, out)
		t.Logf("%s, after clean: %v", name, again)
		if want := first["remote"] + first["remote cache hit"]; again["remote cache hit"] != want || !onlyKinds(again, "remote cache hit", "internal") {
			t.Errorf("%s: rebuild %v, want %d remote cache hits and nothing executed\n%s", name, again, want, out)
		}
		b.checkOutputs(map[string]string{"bazel-bin/shout.txt": "HELLO FROM PADDOCK\n", "bazel-bin/hello.txt": "hello, paddock\n"})
		return salt
	}
	salt := buildTwice("token", "--remote_header=authorization=Bearer "+p.rw)
	buildTwice("mTLS", "--tls_client_certificate="+p.bazel.Cert, "--tls_client_key="+p.bazel.Key)

	// Without credentials Bazel is refused, and says why.
	out, code, _ := b.Exec("build", append(secureFlags(b.remoteFlags(f.addr), p), "//:greeting")...)
	if code == 0 || !strings.Contains(out, "UNAUTHENTICATED") {
		t.Errorf("a build without credentials: exit %d, want a failure naming UNAUTHENTICATED\n%s", code, out)
	}

	// Read-only: a remote cache only. What the token builds cached comes
	// back; a fresh salt runs locally and its upload is refused cleanly.
	ro := "--remote_header=authorization=Bearer " + p.ro
	cacheOnly := []string{"--noshow_progress", "--color=no", "--curses=no", "--remote_cache=grpcs://" + f.addr,
		"--remote_instance_name=e2e", "--tls_certificate=" + p.ca.Cert, ro, "--spawn_strategy=local", "--incompatible_strict_action_env",
		// The same platform as remoteFlags, so the action keys are the same.
		"--remote_default_exec_properties=OSFamily=Linux"}
	for _, repo := range []string{"rules_cc", "rules_java", "remote_coverage_tools"} {
		cacheOnly = append(cacheOnly, "--override_repository="+repo+"="+filepath.Join(b.stubs, repo))
	}
	b.Run(0, "clean")
	out = b.Run(0, "build", append(append(cacheOnly, salt), targets...)...)
	hits := bazeltest.ProcessSummary(t, out)
	t.Logf("read-only token, what the token's build cached: %v", hits)
	if hits["remote cache hit"] < 4 || !onlyKinds(hits, "remote cache hit", "internal") {
		t.Errorf("read-only token: %v, want only remote cache hits\n%s", hits, out)
	}
	b.Run(0, "clean")
	out = b.Run(0, "build", append(cacheOnly, "--action_env=PADDOCK_SALT=read-only", "//:greeting", "//:shout")...)
	local := bazeltest.ProcessSummary(t, out)
	t.Logf("read-only token, new actions: %v", local)
	// Bazel 4.2.3 reports the refused uploads only as "2 errors during bulk
	// transfer"; the build below shows nothing was written.
	if local["local"] != 2 || !strings.Contains(out, "Writing to Remote Cache") {
		t.Errorf("read-only token: %v, want 2 local actions and a warning that their upload failed\n%s", local, out)
	}
	b.checkOutputs(map[string]string{"bazel-bin/shout.txt": "HELLO FROM PADDOCK\n"})
	b.Run(0, "clean")
	out = b.Run(0, "build", append(cacheOnly, "--action_env=PADDOCK_SALT=read-only", "//:greeting", "//:shout")...)
	if again := bazeltest.ProcessSummary(t, out); again["local"] != 2 {
		t.Errorf("read-only token: after the refused uploads %v, want the 2 actions local again (nothing was cached)\n%s", again, out)
	}
	b.Shutdown()
	f.shutdown()
}
