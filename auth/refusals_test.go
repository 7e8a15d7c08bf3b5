package auth_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/auth"
)

// TestRefusalsAreCounted: every call the policy refuses is counted by
// reason (the paddock_auth_refused_calls_total metric): refused calls
// reach no per-RPC metric, and operators could not alert on them.
func TestRefusalsAreCounted(t *testing.T) {
	sf := startSecureFarm(t)
	before := auth.Refusals()
	_, err := repb.NewCapabilitiesClient(sf.dial(t, "", nil)).GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{InstanceName: "team-a"})
	wantCode(t, err, codes.Unauthenticated, "no credentials")
	_, err = repb.NewCapabilitiesClient(sf.dial(t, tokenB, nil)).GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{InstanceName: "team-a"})
	wantCode(t, err, codes.PermissionDenied, "another tenant's instance")
	after := auth.Refusals()
	for _, reason := range []string{"unauthenticated", "permission_denied"} {
		if after[reason] < before[reason]+1 {
			t.Errorf("%s refusals: %d before, %d after a refused call", reason, before[reason], after[reason])
		}
	}
}
