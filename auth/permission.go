package auth

import (
	"fmt"
	"slices"
	"strings"
)

// Permission is one thing a tenant's identity may do on the tenant's
// instance names. The names are the policy file's.
type Permission string

const (
	// CASRead: FindMissingBlobs, BatchReadBlobs, GetTree, ByteStream Read.
	CASRead Permission = "cas-read"
	// CASWrite: BatchUpdateBlobs, ByteStream Write and QueryWriteStatus.
	CASWrite Permission = "cas-write"
	// ACRead: GetActionResult.
	ACRead Permission = "ac-read"
	// ACWrite: UpdateActionResult. Granted to no client unless the policy
	// says so: results are written by workers, and a client that may write
	// them can poison every build that trusts the cache.
	ACWrite Permission = "ac-write"
	// Execute: Execute, WaitExecution and the Operations API (on the
	// caller's own operations only).
	Execute Permission = "execute"
	// Admin: the scheduler's AdminService (DrainWorker, UndrainWorker,
	// ListWorkers) and, with a policy, its status page, which shows every
	// tenant's operations. It is farm-wide: instance names do not limit it.
	Admin Permission = "admin"
)

// allPermissions lists every permission, in the order the docs give them.
var allPermissions = []Permission{CASRead, CASWrite, ACRead, ACWrite, Execute, Admin}

// ParsePermission checks a policy's permission name.
func ParsePermission(s string) (Permission, error) {
	p := Permission(s)
	if !slices.Contains(allPermissions, p) {
		names := make([]string, len(allPermissions))
		for i, q := range allPermissions {
			names[i] = string(q)
		}
		return "", fmt.Errorf("unknown permission %q (known: %s)", s, strings.Join(names, ", "))
	}
	return p, nil
}

// permSet is a set of permissions as bits, so a check costs no allocation.
type permSet uint8

func (s permSet) has(p Permission) bool { return s&bit(p) != 0 }

func bit(p Permission) permSet {
	if i := slices.Index(allPermissions, p); i >= 0 {
		return 1 << i
	}
	return 0
}
