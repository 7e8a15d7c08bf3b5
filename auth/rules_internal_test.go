package auth

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestWorkersCannotPushAssetRecords: a worker identity, which holds
// ac-write on every instance to write action results, may not push
// Remote Asset records (a stolen worker credential would plant URI to
// content mappings every tenant's builds fetch); a tenant's identity with
// ac-write on its instance may, and the worker may still write results.
func TestWorkersCannotPushAssetRecords(t *testing.T) {
	worker := &Principal{Name: "worker/w", Worker: true}
	tenant := &Principal{Name: "a/ci", Tenant: "a", scopes: []instanceScope{{name: "a"}}, perms: bit(ACWrite) | bit(CASRead)}
	for _, m := range []string{asset + "Push/PushBlob", asset + "Push/PushDirectory"} {
		if err := check(rules[m], worker, "a", true); status.Code(err) != codes.PermissionDenied {
			t.Errorf("%s by a worker: %v, want PERMISSION_DENIED", m, err)
		}
		if err := check(rules[m], tenant, "a", true); err != nil {
			t.Errorf("%s by a tenant with ac-write: %v", m, err)
		}
	}
	if err := check(rules[rev2+"ActionCache/UpdateActionResult"], worker, "a", true); err != nil {
		t.Errorf("a worker writing an action result: %v", err)
	}
}
