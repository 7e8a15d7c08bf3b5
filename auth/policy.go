package auth

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/rev2/instancename"
)

// Policy is a compiled auth policy: which credential is which principal.
// It is read-only after LoadPolicy and safe for concurrent use. A nil
// *Policy means no policy: every call is allowed, as in a plain `paddock
// up` on loopback.
type Policy struct {
	owners      []owner // instance scope → partition, longest name first
	tokens      map[[32]byte]*Principal
	certs       map[string]*Principal
	jwtSubjects map[string]*Principal
	jwt         *jwtVerifier               // nil without a jwt section
	limits      map[string]Limits          // by tenant; only tenants with a limit
	scopes      map[string][]instanceScope // every tenant's instance scopes, by tenant
	// clock tells when a client certificate has expired (unexpiredChain);
	// the real one except in tests.
	clock clock.Clock
}

// owner is one of a tenant's instance scopes and the CAS partition it
// maps to.
type owner struct {
	scope             instanceScope
	partition, tenant string
}

// UnownedPartition is the partition of instance names no tenant owns:
// only farm components reach them, and nothing of a tenant is in it.
const UnownedPartition = "_unowned"

// PartitionOf returns the CAS partition of an instance name: that of the
// tenant owning it (by the longest matching prefix). A nil policy has one
// partition, "".
func (p *Policy) PartitionOf(instance string) string {
	if p == nil {
		return ""
	}
	if o, ok := p.ownerOf(instance); ok {
		return o.partition
	}
	return UnownedPartition
}

// TenantOf returns the tenant owning an instance name (by the longest
// matching prefix), for what is done on the tenant's behalf away from its
// call: the runner pulls an action's image with this tenant's registry
// credentials. "" for a nil policy and for names no tenant owns. Tenants
// that list the same prefix (they must share a partition) share that
// instance's results too; the first one in the file is named.
func (p *Policy) TenantOf(instance string) string {
	if p == nil {
		return ""
	}
	o, _ := p.ownerOf(instance)
	return o.tenant
}

// ownerOf is the owner of an instance name: the first of p.owners (kept
// longest prefix first) whose prefix covers it; ok is false when no
// tenant owns it. PartitionOf and TenantOf both ask it, so they never
// disagree about whose a name is.
func (p *Policy) ownerOf(instance string) (o owner, ok bool) {
	for _, o := range p.owners {
		if o.scope.covers(instance) {
			return o, true
		}
	}
	return owner{}, false
}

// Principal is an authenticated caller as the policy sees it.
type Principal struct {
	// Name is for logs: "tenant/identity-name" or "worker/name".
	Name string
	// Tenant owns the caller's operations; "" for workers.
	Tenant string
	// Worker is a farm component: the worker protocol and storage for
	// every instance, nothing else.
	Worker bool
	// Scheduler is a scheduler in front of a separate storage (a Worker
	// too, without the worker protocol): at storage, its calls that name
	// a tenant (OnBehalfOfHeader) are that tenant's (Policy.actingFor).
	Scheduler bool
	scopes    []instanceScope
	perms     permSet
	// policy decides whose a name is (Owns); nil in tests of principals
	// made by hand, whose scopes alone then decide.
	policy *Policy
}

// Allowed reports whether p holds perm on instance.
func (p *Principal) Allowed(perm Permission, instance string) bool {
	if p.Worker {
		switch perm {
		case CASRead, CASWrite, ACRead, ACWrite:
			return true
		}
		return false
	}
	if !p.perms.has(perm) {
		return false
	}
	if perm == Admin {
		return true
	}
	return p.Owns(instance)
}

// Holds reports whether p has perm on some instance name (for calls that
// name none, such as the Operations API, which the scheduler scopes to the
// caller's own operations).
func (p *Principal) Holds(perm Permission) bool {
	if p.Worker {
		return perm == CASRead || perm == CASWrite || perm == ACRead || perm == ACWrite
	}
	return p.perms.has(perm)
}

// Owns reports whether instance is p's tenant's: the most specific scope
// of the policy that covers it (its owner, as PartitionOf and TenantOf
// decide) is one of p's. A name in one of p's scopes that another tenant
// owns through a longer prefix is not p's: tenants of one partition with
// the prefixes "shared" and "shared/eps" each reach their own names, where
// the first had reached the second's action cache, joined its executions,
// and had its actions' images pulled with the second's registry
// credentials. Tenants that list the same scope share its names.
func (p *Principal) Owns(instance string) bool {
	if p.Worker {
		return true
	}
	if p.policy != nil {
		o, ok := p.policy.ownerOf(instance)
		return ok && slices.Contains(p.scopes, o.scope)
	}
	for _, sc := range p.scopes {
		if sc.covers(instance) {
			return true
		}
	}
	return false
}

// LoadPolicy reads and compiles the policy file at path. Every error names
// the file and the line at fault: a bad policy must stop start-up, never
// fall back to allowing everything.
func LoadPolicy(path string) (*Policy, error) {
	b, err := readPolicyFile(path)
	if err != nil {
		return nil, err
	}
	p, err := compilePolicy(b, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("auth policy %s: %w", path, err)
	}
	return p, nil
}

// compilePolicy is LoadPolicy without the file; relative key files are
// resolved against dir.
func compilePolicy(b []byte, dir string) (*Policy, error) {
	pf, root, err := parsePolicyFile(b)
	if err != nil {
		return nil, err
	}
	p := &Policy{tokens: map[[32]byte]*Principal{}, certs: map[string]*Principal{}, jwtSubjects: map[string]*Principal{},
		limits: map[string]Limits{}, scopes: map[string][]instanceScope{}, clock: clock.Real{}}
	if pf.JWT.JWKS != "" || len(pf.JWT.Keys) > 0 {
		if p.jwt, err = newJWTVerifier(pf.JWT, dir, root); err != nil {
			return nil, err
		}
	}
	if len(pf.Tenants) == 0 && len(pf.Workers) == 0 && len(pf.Schedulers) == 0 {
		return nil, fmt.Errorf("line %d: a policy needs tenants or workers (or schedulers)", lineOf(root))
	}
	if err := p.addOwners(pf, root); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, t := range pf.Tenants {
		at := func(path ...any) int { return lineOf(root, append([]any{"tenants", i}, path...)...) }
		if !validName(t.Name) {
			return nil, fmt.Errorf("line %d: tenant %d: name %q must be letters, digits, '.', '_' or '-', not starting with '_'", at("name"), i+1, t.Name)
		}
		if seen[t.Name] {
			return nil, fmt.Errorf("line %d: tenant %q is defined twice", at("name"), t.Name)
		}
		seen[t.Name] = true
		if len(t.InstancePrefixes)+len(t.InstanceNames) == 0 {
			return nil, fmt.Errorf("line %d: tenant %q has no instance_prefixes or instance_names", at(), t.Name)
		}
		p.scopes[t.Name] = scopesOf(t)
		if err := p.addLimits(t, i, root); err != nil {
			return nil, err
		}
		for j, id := range t.Identities {
			pr := &Principal{Tenant: t.Name, scopes: p.scopes[t.Name], Name: t.Name + "/" + id.Name, policy: p}
			for k, s := range id.Permissions {
				perm, err := ParsePermission(s)
				if err != nil {
					return nil, fmt.Errorf("line %d: tenant %q: %w", at("identities", j, "permissions", k), t.Name, err)
				}
				pr.perms |= bit(perm)
			}
			if err := p.add(id, pr); err != nil {
				return nil, fmt.Errorf("line %d: tenant %q: %w", at("identities", j), t.Name, err)
			}
		}
	}
	if err := p.addComponents(pf, root); err != nil {
		return nil, err
	}
	return p, nil
}

// addComponents files the policy's workers and schedulers, which take no
// permissions: they have exactly their class's.
func (p *Policy) addComponents(pf PolicyFile, root *yaml.Node) error {
	for _, c := range []struct {
		key, class string
		ids        []IdentityConfig
		scheduler  bool
	}{{"workers", "worker", pf.Workers, false}, {"schedulers", "scheduler", pf.Schedulers, true}} {
		for j, id := range c.ids {
			if len(id.Permissions) > 0 {
				return fmt.Errorf("line %d: %s take no permissions: they have exactly the %s's", lineOf(root, c.key, j, "permissions"), c.key, c.class)
			}
			if err := p.add(id, &Principal{Worker: true, Scheduler: c.scheduler, Name: c.class + "/" + id.Name}); err != nil {
				return fmt.Errorf("line %d: %s: %w", lineOf(root, c.key, j), c.class, err)
			}
		}
	}
	return nil
}

// add files pr under the one credential id names.
func (p *Policy) add(id IdentityConfig, pr *Principal) error {
	n := 0
	for _, s := range []string{id.TokenSHA256, id.Certificate, id.JWTSubject} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return fmt.Errorf("an identity needs exactly one of token_sha256, certificate, jwt_subject")
	}
	switch {
	case id.TokenSHA256 != "":
		raw, err := hex.DecodeString(strings.TrimPrefix(id.TokenSHA256, "sha256:"))
		if err != nil || len(raw) != 32 {
			return fmt.Errorf("token_sha256 is not 64 hex digits (the SHA-256 of the token: printf %%s TOKEN | sha256sum)")
		}
		key := [32]byte(raw)
		if p.tokens[key] != nil {
			return fmt.Errorf("token_sha256 is given twice")
		}
		p.tokens[key] = pr
	case id.Certificate != "":
		if p.certs[id.Certificate] != nil {
			return fmt.Errorf("certificate %q is given twice", id.Certificate)
		}
		p.certs[id.Certificate] = pr
	default:
		if p.jwt == nil {
			return fmt.Errorf("jwt_subject %q without a jwt section (keys or jwks)", id.JWTSubject)
		}
		if p.jwtSubjects[id.JWTSubject] != nil {
			return fmt.Errorf("jwt_subject %q is given twice", id.JWTSubject)
		}
		p.jwtSubjects[id.JWTSubject] = pr
	}
	return nil
}

// validName: tenant and partition names become directory and file names.
func validName(s string) bool {
	if s == "" || s[0] == '_' || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// addOwners records every tenant's scopes with its partition, and refuses
// scopes of different partitions that overlap: a tenant could otherwise
// name an instance inside another's and land in its partition.
func (p *Policy) addOwners(pf PolicyFile, root *yaml.Node) error {
	type at struct{ tenant, line int }
	where := map[instanceScope]at{}
	for i, t := range pf.Tenants {
		part := t.Partition
		if part == "" {
			part = t.Name
		}
		if !validName(part) {
			return fmt.Errorf("line %d: tenant %q: partition %q must be letters, digits, '.', '_' or '-', not starting with '_'", lineOf(root, "tenants", i, "partition"), t.Name, part)
		}
		for j, sc := range scopesOf(t) {
			line := lineOf(root, "tenants", i, "instance_prefixes", j)
			if sc.exact {
				line = lineOf(root, "tenants", i, "instance_names", j-len(t.InstancePrefixes))
			}
			if err := instancename.Check(sc.name); err != nil {
				return fmt.Errorf("line %d: tenant %q: %s %w, so no request could name it", line, t.Name, sc, err)
			}
			for _, o := range p.owners {
				if o.partition != part && sc.overlaps(o.scope) {
					w := where[o.scope]
					return fmt.Errorf("line %d: tenant %q: %s overlaps %s of tenant %q (line %d), which is in another CAS partition; give them the same partition or disjoint scopes",
						line, t.Name, sc, o.scope, pf.Tenants[w.tenant].Name, w.line)
				}
			}
			p.owners = append(p.owners, owner{scope: sc, partition: part, tenant: t.Name})
			where[sc] = at{i, line}
		}
	}
	// Longest first, an exact name before a prefix of the same length:
	// the first that covers a name is its owner.
	slices.SortStableFunc(p.owners, func(a, b owner) int {
		if d := len(b.scope.name) - len(a.scope.name); d != 0 {
			return d
		}
		return exactFirst(a) - exactFirst(b)
	})
	return nil
}

func exactFirst(o owner) int {
	if o.scope.exact {
		return 0
	}
	return 1
}
