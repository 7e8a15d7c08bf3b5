package auth

import (
	"fmt"
	"strings"
)

// instanceScope is instance names a tenant owns: a prefix (itself and the
// names below it, by whole path segments) or, exact, one name alone. An
// exact scope is how a tenant owns the empty instance name, which Bazel
// without --remote_instance_name, BuildStream 1.x and recc use, without
// owning every name as the empty prefix does.
type instanceScope struct {
	name  string
	exact bool
}

// covers reports whether instance is in the scope.
func (s instanceScope) covers(instance string) bool {
	if s.exact {
		return instance == s.name
	}
	return coversInstance(s.name, instance)
}

// overlaps reports whether some instance name is in both scopes.
func (s instanceScope) overlaps(o instanceScope) bool {
	switch {
	case s.exact:
		return o.covers(s.name)
	case o.exact:
		return s.covers(o.name)
	}
	return coversInstance(s.name, o.name) || coversInstance(o.name, s.name)
}

// String is the scope as the policy file writes it, for messages.
func (s instanceScope) String() string {
	if s.exact {
		return fmt.Sprintf("instance name %q", s.name)
	}
	return fmt.Sprintf("instance prefix %q", s.name)
}

// coversInstance: a prefix covers itself and the names below it, by whole
// path segments ("team-a" does not cover "team-ab"); "" covers everything.
func coversInstance(prefix, instance string) bool {
	if prefix == "" || instance == prefix {
		return true
	}
	return strings.HasPrefix(instance, prefix) && instance[len(prefix)] == '/'
}

// scopesOf is a tenant's scopes: its prefixes, then its exact names.
func scopesOf(t TenantConfig) []instanceScope {
	var out []instanceScope
	for _, p := range t.InstancePrefixes {
		out = append(out, instanceScope{name: p})
	}
	for _, n := range t.InstanceNames {
		out = append(out, instanceScope{name: n, exact: true})
	}
	return out
}
