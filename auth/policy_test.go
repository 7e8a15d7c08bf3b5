package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodHash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

// TestBadPolicyNamesTheLine: every way a policy can be wrong stops loading
// with an error naming the line at fault.
func TestBadPolicyNamesTheLine(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "garbage.pem"), []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.jwks"), []byte(`{"keys":[{"kty":"RSA","kid":"k"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, policy string
		want         []string
	}{
		{"unknown permission", `tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - token_sha256: ` + goodHash + `
        permissions: [cas-read, cas-delete]
`, []string{"line 6", `unknown permission "cas-delete"`}},
		{"tenant without prefixes", `tenants:
  - name: a
    identities: []
`, []string{"line 2", "no instance_prefixes"}},
		{"jwt without an audience", `jwt:
  keys: [key.pem]
tenants:
  - {name: a, instance_prefixes: [a]}
`, []string{"line 2", "audience is required"}},
		{"malformed key file", `jwt:
  audience: paddock
  keys:
    - garbage.pem
tenants:
  - {name: a, instance_prefixes: [a]}
`, []string{"line 4", "garbage.pem", "no PEM block"}},
		{"malformed jwks", `jwt:
  audience: paddock
  jwks: bad.jwks
tenants:
  - {name: a, instance_prefixes: [a]}
`, []string{"line 3", "bad.jwks", "RSA"}},
		{"unknown key", `tenants:
  - name: a
    instance_prefix: [a]
`, []string{"line 3", "instance_prefix"}},
		{"bad token hash", `tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {token_sha256: secret, permissions: [cas-read]}
`, []string{"line 5", "64 hex digits"}},
		{"two credentials", `tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {token_sha256: ` + goodHash + `, certificate: CN=x}
`, []string{"line 5", "exactly one"}},
		{"token twice", `tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {token_sha256: ` + goodHash + `}
workers:
  - {token_sha256: ` + goodHash + `}
`, []string{"line 7", "twice"}},
		{"jwt subject without jwt", `tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {jwt_subject: ci}
`, []string{"line 5", "jwt section"}},
		{"worker with permissions", `workers:
  - {certificate: CN=w, permissions: [admin]}
`, []string{"line 2", "workers take no permissions"}},
		{"tenant twice", `tenants:
  - {name: a, instance_prefixes: [a]}
  - {name: a, instance_prefixes: [b]}
`, []string{"line 3", "twice"}},
		{"negative max_queued", `tenants:
  - name: a
    instance_prefixes: [a]
    max_queued: -1
`, []string{"line 4", `tenant "a"`, "max_queued", "0 for no limit"}},
		{"negative max_running", `tenants:
  - name: a
    instance_prefixes: [a]
    max_running: -5
`, []string{"line 4", "max_running"}},
		{"max_running not a number", `tenants:
  - name: a
    instance_prefixes: [a]
    max_running: lots
`, []string{"line 4", "lots"}},
		{"empty", "", []string{"line", "tenants or workers"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(dir, "auth.yaml")
			if err := os.WriteFile(path, []byte(c.policy), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := LoadPolicy(path)
			if err == nil {
				t.Fatal("loaded a bad policy")
			}
			for _, w := range append(c.want, path) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

// TestInstancePrefixes: a prefix covers itself and names below it, by whole
// path segments.
func TestInstancePrefixes(t *testing.T) {
	for _, c := range []struct {
		prefix, instance string
		want             bool
	}{
		{"a", "a", true}, {"a", "a/b", true}, {"a", "ab", false}, {"a", "", false},
		{"a/b", "a", false}, {"a/b", "a/b/c", true}, {"", "", true}, {"", "anything", true},
	} {
		if got := coversInstance(c.prefix, c.instance); got != c.want {
			t.Errorf("coversInstance(%q, %q) = %v, want %v", c.prefix, c.instance, got, c.want)
		}
	}
}

// TestInstanceNames: a tenant may own the empty instance name alone (the
// default of Bazel, BuildStream 1.x and recc) beside tenants with
// prefixes, in a partition of its own; an exact name overlaps a prefix of
// another partition that covers it, and the same name of another.
func TestInstanceNames(t *testing.T) {
	bstSum := sha256.Sum256([]byte("bst"))
	p, err := compilePolicy([]byte(`tenants:
  - name: bst
    instance_names: [""]
    identities: [{name: ci, token_sha256: `+hex.EncodeToString(bstSum[:])+`, permissions: [execute, cas-read, cas-write, ac-read]}]
  - {name: a, instance_prefixes: [team-a], instance_names: [team-b/only]}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for instance, want := range map[string]string{
		"": "bst", "team-a": "a", "team-a/x": "a", "team-b/only": "a", "team-b/only/x": UnownedPartition, "x": UnownedPartition,
	} {
		if got := p.PartitionOf(instance); got != want {
			t.Errorf("PartitionOf(%q) = %q, want %q", instance, got, want)
		}
	}
	bst := p.tokens[bstSum]
	if bst == nil || !bst.Allowed(Execute, "") || bst.Allowed(Execute, "team-a") || bst.Allowed(CASRead, "x") {
		t.Errorf("the empty name's tenant: %+v; want it allowed on \"\" alone", bst)
	}
	for _, c := range []struct{ file, want string }{
		{"tenants:\n  - {name: a, instance_prefixes: [team]}\n  - {name: b, instance_names: [team/x]}\n",
			`instance name "team/x" overlaps instance prefix "team"`},
		{"tenants:\n  - {name: a, instance_names: [\"\"]}\n  - {name: b, instance_names: [\"\"]}\n",
			`instance name "" overlaps instance name ""`},
		{"tenants:\n  - {name: a, instance_names: [x]}\n  - {name: b, instance_prefixes: [\"\"]}\n",
			`instance prefix "" overlaps instance name "x"`},
		{"tenants:\n  - {name: a}\n", "no instance_prefixes or instance_names"},
		{"tenants:\n  - {name: a, instance_names: [a//b]}\n", `instance name "a//b" has an empty path segment`},
		{"tenants:\n  - {name: a, instance_prefixes: [team/blobs]}\n", `instance prefix "team/blobs" has the segment "blobs"`},
	} {
		if _, err := compilePolicy([]byte(c.file), t.TempDir()); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error saying %s", c.file, err, c.want)
		}
	}
}

// writeEd25519Key writes a fresh public key as PEM and returns the private
// key.
func writeEd25519Key(t testing.TB, path string) ed25519.PrivateKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return priv
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestExamplePolicyLoads: configs/auth.yaml, the documented example, is a
// valid policy and means what its comments say.
func TestExamplePolicyLoads(t *testing.T) {
	p, err := LoadPolicy("../configs/auth.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.tokens) != 3 || len(p.certs) != 4 {
		t.Fatalf("example policy: %d tokens, %d certificates; want 3 and 4", len(p.tokens), len(p.certs))
	}
	w := p.certs["spiffe://example.com/paddock/worker"]
	if w == nil || !w.Worker || w.Holds(Execute) {
		t.Errorf("the worker identity: %+v", w)
	}
	if got := p.TenantLimits(); got["team-a"] != (Limits{MaxQueued: 10000, MaxRunning: 64}) || got["team-b"] != (Limits{MaxRunning: 16}) || len(got) != 2 {
		t.Errorf("example policy limits: %+v", got)
	}
	rel := p.certs["spiffe://example.com/team-a/release"]
	if rel == nil || !rel.Allowed(Execute, "team-a/x") || rel.Allowed(Execute, "team-b") || rel.Allowed(ACWrite, "team-a") {
		t.Errorf("team-a's release identity: %+v", rel)
	}
}

// TestPartitionOf: an instance is in the partition of the tenant owning it
// by the longest prefix; tenants naming one partition share it; prefixes
// of different partitions may not overlap.
func TestPartitionOf(t *testing.T) {
	p, err := compilePolicy([]byte(`tenants:
  - {name: a, instance_prefixes: [a, shared/a]}
  - {name: b, instance_prefixes: [b], partition: common}
  - {name: c, instance_prefixes: [c, b/c], partition: common}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for instance, want := range map[string]string{
		"a": "a", "a/x": "a", "shared/a/y": "a", "b": "common", "b/c/d": "common", "c": "common",
		"ab": UnownedPartition, "": UnownedPartition, "shared": UnownedPartition,
	} {
		if got := p.PartitionOf(instance); got != want {
			t.Errorf("PartitionOf(%q) = %q, want %q", instance, got, want)
		}
	}
	if got := (*Policy)(nil).PartitionOf("anything"); got != "" {
		t.Errorf("no policy: PartitionOf = %q, want the one partition \"\"", got)
	}
	// The tenant owning an instance (whose registry credentials its
	// actions' images are pulled with), by the same longest prefix.
	for instance, want := range map[string]string{
		"a/x": "a", "shared/a/y": "a", "b": "b", "b/c/d": "c", "c": "c", "ab": "", "shared": "",
	} {
		if got := p.TenantOf(instance); got != want {
			t.Errorf("TenantOf(%q) = %q, want %q", instance, got, want)
		}
	}
	if got := (*Policy)(nil).TenantOf("a"); got != "" {
		t.Errorf("no policy: TenantOf = %q, want \"\"", got)
	}
	_, err = compilePolicy([]byte(`tenants:
  - {name: a, instance_prefixes: [a]}
  - {name: b, instance_prefixes: [b, a/b]}
`), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), `instance prefix "a/b" overlaps instance prefix "a"`) {
		t.Errorf("overlapping prefixes of two partitions: %v, want an error naming line 3 and both prefixes", err)
	}
	_, err = compilePolicy([]byte(`tenants:
  - {name: a, instance_prefixes: [a], partition: ../etc}
`), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "partition") {
		t.Errorf("a partition name with a path in it: %v", err)
	}
}

// TestNestedScopesOwnOnlyTheirOwnNames: of two tenants in one partition
// with the prefixes "shared" and "shared/eps", each reaches the names it
// owns (the most specific scope decides, as PartitionOf and TenantOf do),
// not the other's: delta's scope covers "shared/eps", and it read eps's
// action cache there, joined eps's executions and had its images pulled
// with eps's registry credentials. Tenants that list the same prefix
// share its names, and a tenant's own longer prefix inside another's is
// its own.
func TestNestedScopesOwnOnlyTheirOwnNames(t *testing.T) {
	sum := func(s string) [32]byte { return sha256.Sum256([]byte(s)) }
	hexSum := func(s string) string { h := sum(s); return hex.EncodeToString(h[:]) }
	p, err := compilePolicy([]byte(`tenants:
  - name: delta
    instance_prefixes: [shared, shared/eps/delta]
    partition: sh
    identities: [{name: ci, token_sha256: `+hexSum("delta")+`, permissions: [execute, ac-read]}]
  - name: eps
    instance_prefixes: [shared/eps]
    partition: sh
    identities: [{name: ci, token_sha256: `+hexSum("eps")+`, permissions: [execute, ac-read]}]
  - name: twin
    instance_prefixes: [shared/eps]
    partition: sh
    identities: [{name: ci, token_sha256: `+hexSum("twin")+`, permissions: [execute, ac-read]}]
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tenant, instance string
		want             bool
	}{
		{"delta", "shared", true}, {"delta", "shared/x", true},
		{"delta", "shared/eps", false}, {"delta", "shared/eps/x", false},
		{"delta", "shared/eps/delta", true}, {"delta", "shared/eps/delta/y", true},
		{"eps", "shared/eps", true}, {"eps", "shared/eps/x", true},
		{"eps", "shared", false}, {"eps", "shared/eps/delta", false},
		{"twin", "shared/eps", true}, {"twin", "shared/eps/x", true}, {"twin", "shared/x", false},
	} {
		pr := p.tokens[sum(c.tenant)]
		if got := pr.Owns(c.instance); got != c.want {
			t.Errorf("%s owns %q: %v, want %v", c.tenant, c.instance, got, c.want)
		}
		if got := pr.Allowed(ACRead, c.instance); got != c.want {
			t.Errorf("%s may read the action cache of %q: %v, want %v", c.tenant, c.instance, got, c.want)
		}
	}
}
