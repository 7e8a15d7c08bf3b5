package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// schedulerPolicy has a tenant, a worker and a scheduler, known by the
// tokens "a", "worker" and "scheduler".
func schedulerPolicy(t *testing.T) *Policy {
	t.Helper()
	h := func(token string) string {
		sum := sha256.Sum256([]byte(token))
		return hex.EncodeToString(sum[:])
	}
	p, err := compilePolicy([]byte(`tenants:
  - name: a
    instance_prefixes: [a, shared]
    identities:
      - {name: ci, token_sha256: `+h("a")+`, permissions: [cas-read]}
workers:
  - {name: w, token_sha256: `+h("worker")+`}
schedulers:
  - {name: s, token_sha256: `+h("scheduler")+`}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// The header naming a tenant makes a scheduler's call that tenant's, with
// storage's permissions on the tenant's instance names only, Push
// included; a scheduler without it is a worker that may not register;
// the header changes nothing for anyone else.
func TestSchedulersActForTheTenantTheyName(t *testing.T) {
	p := schedulerPolicy(t)
	call := func(token string, onBehalfOf ...string) (*Principal, error) {
		md := metadata.Pairs("authorization", "Bearer "+token)
		for _, v := range onBehalfOf {
			md.Append(OnBehalfOfHeader, v)
		}
		return p.Authenticate(metadata.NewIncomingContext(context.Background(), md))
	}
	pr, err := call("scheduler", "a")
	if err != nil || pr.Tenant != "a" || pr.Worker || !strings.Contains(pr.Name, "scheduler/s") {
		t.Fatalf("the scheduler for tenant a: %+v, %v", pr, err)
	}
	for _, c := range []struct {
		method, instance string
		ok               bool
	}{
		{asset + "Push/PushBlob", "a", true},
		{asset + "Push/PushBlob", "shared/x", true},
		{rev2 + "ActionCache/UpdateActionResult", "a", true},
		{byteStream + "Write", "b", false},
		{asset + "Push/PushBlob", "b", false},
		{rev2 + "Execution/Execute", "a", false},
		{workerProto + "WorkerService/Connect", "", false},
	} {
		r, _ := ruleFor(c.method)
		if err := check(r, pr, c.instance, r.instance != nil); (err == nil) != c.ok {
			t.Errorf("the scheduler for a: %s on %q: %v, want allowed %v", c.method, c.instance, err, c.ok)
		}
	}

	sched, err := call("scheduler")
	if err != nil || sched.Tenant != "" || !sched.Worker {
		t.Fatalf("the scheduler for itself: %+v, %v", sched, err)
	}
	if err := check(rules[workerProto+"WorkerService/Connect"], sched, "", false); status.Code(err) != codes.PermissionDenied {
		t.Errorf("the scheduler registering as a worker: %v, want PERMISSION_DENIED", err)
	}
	if err := check(rules[asset+"Push/PushBlob"], sched, "a", true); status.Code(err) != codes.PermissionDenied {
		t.Errorf("the scheduler pushing for no tenant: %v, want PERMISSION_DENIED", err)
	}
	for _, names := range [][]string{{"nobody"}, {""}, {"a", "b"}} {
		if _, err := call("scheduler", names...); status.Code(err) != codes.PermissionDenied {
			t.Errorf("the scheduler naming %q: %v, want PERMISSION_DENIED", names, err)
		}
	}
	if pr, err := call("scheduler", "a", "a"); err != nil || pr.Tenant != "a" {
		t.Errorf("the scheduler naming a twice: %+v, %v", pr, err)
	}
	if pr, err := call("worker", "a"); err != nil || pr.Tenant != "" || pr.Name != "worker/w" {
		t.Errorf("a worker naming a: %+v, %v; want the worker itself", pr, err)
	}
	if pr, err := call("a", "nobody"); err != nil || pr.Name != "a/ci" {
		t.Errorf("a client naming a tenant: %+v, %v; want the client itself", pr, err)
	}
}

// Schedulers take no permissions, as workers do.
func TestSchedulersTakeNoPermissions(t *testing.T) {
	_, err := compilePolicy([]byte(`schedulers:
  - name: s
    token_sha256: `+goodHash+`
    permissions: [admin]
`), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), "line 4") || !strings.Contains(err.Error(), "schedulers take no permissions") {
		t.Fatalf("a scheduler with permissions: %v", err)
	}
}
