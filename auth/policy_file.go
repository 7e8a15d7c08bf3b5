package auth

import (
	"bytes"
	"errors"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-build/paddock/internal/smallfile"
)

// PolicyFile is the auth policy as written in YAML (`paddock up --auth
// FILE`, `--auth` on storage and scheduler). configs/auth.yaml documents
// every key. Compile it with LoadPolicy.
type PolicyFile struct {
	// JWT configures bearer tokens that are JWTs. Optional.
	JWT JWTConfig `yaml:"jwt"`
	// Tenants are the clients, each with the instance names it owns.
	Tenants []TenantConfig `yaml:"tenants"`
	// Workers are the identities of farm components: workers (the worker
	// protocol, and storage for any instance), and a scheduler reading a
	// separate storage that is not listed in Schedulers. No client
	// identity may register a worker.
	Workers []IdentityConfig `yaml:"workers"`
	// Schedulers are the identities of schedulers in front of a separate
	// storage: storage for any instance, as a worker, but not the worker
	// protocol; and the calls a scheduler forwards for a tenant's client
	// count as that tenant's at storage (OnBehalfOfHeader), so that the
	// tenant's shares apply there and it may push Remote Asset records.
	Schedulers []IdentityConfig `yaml:"schedulers"`
}

// JWTConfig says which JWTs are accepted: signed by one of Keys or JWKS,
// and, when set, with this issuer and audience.
type JWTConfig struct {
	// Keys are PEM files of public keys (RSA, ECDSA or Ed25519), relative
	// to the policy file's directory.
	Keys []string `yaml:"keys"`
	// JWKS is a JSON Web Key Set file; keys are chosen by the token's kid.
	JWKS     string `yaml:"jwks"`
	Issuer   string `yaml:"issuer"`
	Audience string `yaml:"audience"`
}

// TenantConfig is one tenant: a name, the instance names it owns, and the
// identities that act for it.
type TenantConfig struct {
	Name string `yaml:"name"`
	// InstancePrefixes are the instance names the tenant owns: a prefix p
	// covers p itself and every name under "p/". The empty prefix covers
	// every instance name (a farm with one tenant).
	InstancePrefixes []string `yaml:"instance_prefixes"`
	// InstanceNames are instance names the tenant owns alone, not the
	// names below them: [""] is the empty instance name, the default of
	// Bazel, BuildStream 1.x and recc, without every other name as the
	// empty prefix would give. A tenant needs prefixes or names.
	InstanceNames []string `yaml:"instance_names"`
	// Partition names the tenant's CAS partition; tenants that name the
	// same one share blobs (and hard-linked inputs). Default: the tenant's
	// name, a partition of its own.
	Partition  string           `yaml:"partition"`
	Identities []IdentityConfig `yaml:"identities"`
	// MaxQueued bounds the tenant's queued (not yet running) actions:
	// Execute beyond it answers RESOURCE_EXHAUSTED. 0: no bound but the
	// scheduler's max_queued_per_instance.
	MaxQueued int `yaml:"max_queued"`
	// MaxRunning bounds the tenant's actions on workers at once; the
	// rest wait queued while other tenants' actions go ahead. 0: no bound.
	MaxRunning int `yaml:"max_running"`
}

// IdentityConfig is one credential. Exactly one of TokenSHA256,
// Certificate and JWTSubject is set.
type IdentityConfig struct {
	// Name appears in logs (never the token). Optional.
	Name string `yaml:"name"`
	// TokenSHA256 is the hex SHA-256 of a static bearer token; the token
	// itself is never stored.
	TokenSHA256 string `yaml:"token_sha256"`
	// Certificate is a client certificate's SPIFFE ID (a URI SAN,
	// "spiffe://…") or its subject as Go prints it ("CN=ci,O=team-a").
	Certificate string `yaml:"certificate"`
	// JWTSubject is the "sub" claim of an accepted JWT.
	JWTSubject string `yaml:"jwt_subject"`
	// Permissions on the tenant's instance names (not for workers or
	// schedulers).
	Permissions []string `yaml:"permissions"`
}

// parsePolicyFile decodes b strictly (unknown keys are errors) and also
// returns the YAML tree, so later checks can name the line they reject.
func parsePolicyFile(b []byte) (PolicyFile, *yaml.Node, error) {
	var pf PolicyFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&pf); err != nil && !errors.Is(err, io.EOF) {
		return pf, nil, err
	}
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return pf, nil, err
	}
	return pf, &root, nil
}

// lineOf returns the line of the node at path (map keys as strings,
// sequence indexes as ints) in root, or of the deepest node found on the
// way; 0 if there is none.
func lineOf(root *yaml.Node, path ...any) int {
	n := root
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 0
	for _, p := range path {
		if n == nil {
			break
		}
		line = n.Line
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			for i := 0; n.Kind == yaml.MappingNode && i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == k {
					next = n.Content[i+1]
					line = n.Content[i].Line
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
			}
		}
		n = next
	}
	if n != nil {
		line = n.Line
	}
	return line
}

// readPolicyFile reads path; LoadPolicy compiles what it returns.
func readPolicyFile(path string) ([]byte, error) {
	return smallfile.Read(path, "auth policy")
}
