package e2e

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/images/imagetest"
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

// TestRolesOverMTLS: storage, scheduler and worker as separate processes,
// every connection between them TLS with client certificates: the worker
// to the scheduler's worker listener and to storage, the scheduler to
// storage (listed under schedulers in the policy, so that the calls it
// forwards count as their tenant's there). A client with a token runs an action through them, and one on
// a private image: the worker, given the policy (--auth), tells the runner
// the action's tenant, whose registry credentials only the runner holds.
func TestRolesOverMTLS(t *testing.T) {
	needPaddock(t)
	p := newSecurePKI(t)
	sched := p.ca.Client("scheduler", pkix.Name{CommonName: "scheduler"}, "spiffe://paddock.test/scheduler")
	admin := rand.Text()
	h := func(s string) string { sum := sha256.Sum256([]byte(s)); return hex.EncodeToString(sum[:]) }
	policy := filepath.Join(p.ca.Dir, "roles.yaml")
	if err := os.WriteFile(policy, []byte(fmt.Sprintf(`tenants:
  - name: everyone
    instance_prefixes: [""]
    identities:
      - {token_sha256: %s, permissions: [cas-read, cas-write, ac-read, execute]}
  - name: ops
    instance_prefixes: [ops]
    partition: everyone # "" covers "ops": one partition
    identities:
      - {token_sha256: %s, permissions: [admin]}
workers:
  - {name: worker, certificate: "spiffe://paddock.test/worker"}
schedulers:
  - {name: scheduler, certificate: "spiffe://paddock.test/scheduler"}
`, h(p.rw), h(admin))), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := []string{"--tls-cert", p.server.Cert, "--tls-key", p.server.Key, "--tls-client-ca", p.ca.Cert, "--auth", policy}
	dialAs := func(pair testpki.Pair) []string {
		return []string{"--dial-tls-ca", p.ca.Cert, "--dial-tls-cert", pair.Cert, "--dial-tls-key", pair.Key}
	}
	dir := searchableTempDir(t)
	workDir := filepath.Join(dir, "worker")
	storage, storageAddr := startProcess(t, "storage", regexp.MustCompile(`^paddock storage listening on (\S+)`),
		append([]string{"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage")}, serve...)...)
	schedProc, workerAddr := startProcess(t, "scheduler", regexp.MustCompile(`^paddock scheduler serving workers on (\S+)`),
		append(append([]string{"scheduler", "--listen", "127.0.0.1:0", "--worker-listen", "127.0.0.1:0", "--storage", storageAddr}, serve...), dialAs(sched)...)...)
	schedAddr := ""
	if m := regexp.MustCompile(`^paddock scheduler listening on (\S+)`).FindStringSubmatch(<-schedProc.lines); m != nil {
		schedAddr = m[1]
	} else {
		t.Fatal("the scheduler did not print its client address")
	}
	// The worker reads the policy to tell the runner each action's tenant;
	// the runner has registry credentials for tenant "everyone" only.
	reg := imagetest.ServePrivate(t)
	reg.Allow("everyone-robot", "pass")
	private := reg.Push(t, "private/busybox:1", imagetest.Image(t, "linux/"+runtime.GOARCH, v1.Config{},
		imagetest.BusyboxLayer(t, nil)))
	creds := filepath.Join(t.TempDir(), "everyone.json")
	writeFile(t, creds, reg.DockerConfig("everyone-robot", "pass"), 0o600)
	runnerCfg := filepath.Join(dir, "runner.yaml")
	writeFile(t, runnerCfg, fmt.Sprintf("version: 1\nimages:\n  insecure: [%q]\n  tenants:\n    everyone: {docker_config: %s}\n", reg.Host, creds), 0o644)
	runnerProc, _ := startProcess(t, "runner", regexp.MustCompile(`^paddock runner listening on (\S+)`),
		"runner", "--config", runnerCfg, "--socket", filepath.Join(dir, "runner.sock"), "--state", filepath.Join(dir, "runner"), "--hide", workDir)
	workerProc, _ := startProcess(t, "worker", nil, append([]string{"worker", "--id", "w1", "--scheduler", workerAddr, "--storage", storageAddr,
		"--runner", filepath.Join(dir, "runner.sock"), "--dir", workDir, "--auth", policy}, dialAs(p.worker)...)...)

	tlsConn := func(addr, token string) *grpc.ClientConn {
		cfg, err := auth.ClientTLS(auth.TLSFiles{CA: p.ca.Cert}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)),
			grpc.WithPerRPCCredentials(auth.NewTokenCredentials(token)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}
	adminClient := workerpb.NewAdminServiceClient(tlsConn(workerAddr, admin))
	waitFor(t, "worker w1 connected over mTLS", faultLimit, func() bool {
		resp, err := adminClient.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
		return err == nil && len(resp.Workers) == 1 && resp.Workers[0].Connected
	})
	// The client API is not served on the worker listener, nor the worker
	// protocol on the client's.
	ws, err := repb.NewExecutionClient(tlsConn(workerAddr, p.rw)).Execute(t.Context(), &repb.ExecuteRequest{})
	if err == nil {
		_, err = ws.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("Execute on the worker listener: %v, want UNIMPLEMENTED", err)
	}
	wc, err := workerpb.NewWorkerServiceClient(tlsConn(schedAddr, p.rw)).Connect(t.Context())
	if err == nil {
		_, err = wc.Recv()
	}
	if status.Code(err) != codes.Unimplemented && status.Code(err) != codes.PermissionDenied {
		t.Errorf("the worker protocol on the client listener: %v, want it not served", err)
	}
	conn := tlsConn(schedAddr, p.rw)
	c := &client{t: t, cas: repb.NewContentAddressableStorageClient(conn), exec: repb.NewExecutionClient(conn)}
	_, stdout, _ := c.run(t.Context(), action{cmd: shell("echo through mTLS")})
	if stdout != "through mTLS\n" {
		t.Errorf("stdout %q, want \"through mTLS\\n\"", stdout)
	}
	_, stdout, _ = c.run(t.Context(), action{cmd: &repb.Command{Arguments: []string{"/bin/busybox", "echo", "in the private image"}},
		platform: []*repb.Platform_Property{{Name: "container-image", Value: private}}, doNotCache: true})
	if stdout != "in the private image\n" {
		t.Errorf("tenant everyone on its private image: stdout %q", stdout)
	}
	workerProc.stop(os.Interrupt)
	runnerProc.stop(os.Interrupt)
	schedProc.stop(os.Interrupt)
	storage.stop(os.Interrupt)
}

// TestPaddockRunOverTLS: paddock run reaches a farm behind TLS and the
// auth policy, as docs/security.md recommends setting one up: with
// --tls-ca and a token file, or with a client certificate (mTLS); without
// credentials it is refused. Before, it could only dial plaintext.
func TestPaddockRunOverTLS(t *testing.T) {
	needPaddock(t)
	p := newSecurePKI(t)
	f := startUp(t, "", p.serveFlags()...)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(p.rw), 0o600); err != nil {
		t.Fatal(err)
	}
	salt := rand.Text()
	for name, creds := range map[string][]string{
		"token": {"--tls-ca", p.ca.Cert, "--token-file", token},
		"mTLS":  {"--tls-ca", p.ca.Cert, "--tls-cert", p.bazel.Cert, "--tls-key", p.bazel.Key},
	} {
		args := append([]string{"--instance", "e2e", "--skip-cache"}, creds...)
		stdout, stderr, code := paddockRun(t, dir, f.addr, append(args, "--", "/bin/echo", name, salt)...)
		if code != 0 || stdout != name+" "+salt+"\n" {
			t.Errorf("%s: exit %d, stdout %q, stderr %q", name, code, stdout, stderr)
		}
	}
	if _, stderr, code := paddockRun(t, dir, f.addr, "--instance", "e2e", "--tls-ca", p.ca.Cert, "--", "/bin/true"); code != 1 || !strings.Contains(stderr, "Unauthenticated") {
		t.Errorf("without credentials: exit %d, stderr %q; want 1 and UNAUTHENTICATED", code, stderr)
	}
	f.shutdown()
}

// A farm of one machine, `paddock up --auth` on loopback, takes tokens
// without TLS, so `paddock run --token-file` sends its token there without
// TLS too (before, it refused to, and the farm's operator could not use
// the CLI with a token at all); without the token the call is refused.
// To any other address the token is not sent (auth/TestLoopbackTokenCredentials).
func TestPaddockRunTokenWithoutTLSOnLoopback(t *testing.T) {
	needPaddock(t)
	p := newSecurePKI(t)
	f := startUp(t, "", "--auth", p.policy)
	dir := t.TempDir()
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte(p.rw+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	salt := rand.Text()
	if stdout, stderr, code := paddockRun(t, dir, f.addr, "--instance", "e2e", "--skip-cache", "--token-file", token, "--", "/bin/echo", salt); code != 0 || stdout != salt+"\n" {
		t.Errorf("a token file on loopback: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if _, stderr, code := paddockRun(t, dir, f.addr, "--instance", "e2e", "--", "/bin/true"); code != 1 || !strings.Contains(stderr, "Unauthenticated") {
		t.Errorf("without a token: exit %d, stderr %q; want 1 and UNAUTHENTICATED", code, stderr)
	}
	f.shutdown()
}
