package worker_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/worker"
)

// tenantRecorder runs actions with next and keeps the tenant of each
// request.
type tenantRecorder struct {
	next    worker.Runner
	mu      sync.Mutex
	tenants []string
}

func (r *tenantRecorder) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	r.mu.Lock()
	r.tenants = append(r.tenants, req.GetTenant())
	r.mu.Unlock()
	return r.next.Run(ctx, req)
}

// TestRunnerIsToldTheTenant: the runner learns which tenant queued each
// action (it pulls images with that tenant's registry credentials): the
// one the assignment names, else the owner of the action's instance name,
// and "" without either.
func TestRunnerIsToldTheTenant(t *testing.T) {
	h := newHarness(t)
	rec := &tenantRecorder{next: h.runner}
	tenantOf := func(instance string) string {
		if strings.HasPrefix(instance, "team-a") {
			return "a"
		}
		return ""
	}
	for i, tc := range []struct {
		tenantOf         func(string) string
		instance, queuer string
		want             string
	}{{tenantOf, "team-a/ci", "", "a"}, {tenantOf, "other", "", ""}, {nil, "team-a", "", ""},
		{tenantOf, "team-a/ci", "a-twin", "a-twin"}, {nil, "team-a", "a-twin", "a-twin"}} {
		w, err := worker.New(worker.Options{ID: "w-tenant", CAS: h.cas, AC: h.ac, Files: h.files, Runner: rec,
			BuildDir: filepath.Join(h.dir, "builds-tenant", string(rune('0'+i))), TenantOf: tc.tenantOf})
		if err != nil {
			t.Fatal(err)
		}
		a := h.action(sh("exit 0"), &repb.Directory{}, true)
		a.InstanceName = tc.instance
		a.Tenant = tc.queuer
		ok(t, w.Execute(context.Background(), a))
		w.Close()
		if got := rec.tenants[len(rec.tenants)-1]; got != tc.want {
			t.Errorf("instance %q queued by %q: runner told tenant %q, want %q", tc.instance, tc.queuer, got, tc.want)
		}
	}
}
