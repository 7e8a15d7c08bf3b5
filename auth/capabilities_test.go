package auth_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// TestCapabilitiesPertainToTheCaller: GetCapabilities says what the caller
// may do on the instance it names (the spec: the values "pertain to that
// instance"): exec_enabled only with execute there. Before, every caller
// was told it may execute. update_enabled stays true for all (see
// storage/capabilities_server.go: Bazel refuses to build when it is false
// unless told not to upload local results).
func TestCapabilitiesPertainToTheCaller(t *testing.T) {
	sf := startSecureFarm(t)
	for _, tc := range []struct {
		who, token, instance string
		update, exec         bool
	}{
		{"ci", tokenA, "team-a", true, true},
		{"reader", tokenAReady, "team-a", true, false},
		{"writer", tokenAWrite, "team-a", true, false},
		{"worker", tokenWorker, "team-a", true, false},
	} {
		caps, err := repb.NewCapabilitiesClient(sf.dial(t, tc.token, nil)).GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{InstanceName: tc.instance})
		if err != nil {
			t.Fatalf("%s: %v", tc.who, err)
		}
		if got := caps.CacheCapabilities.ActionCacheUpdateCapabilities.UpdateEnabled; got != tc.update {
			t.Errorf("%s on %s: update_enabled %v, want %v", tc.who, tc.instance, got, tc.update)
		}
		if got := caps.ExecutionCapabilities.GetExecEnabled(); got != tc.exec {
			t.Errorf("%s on %s: exec_enabled %v, want %v", tc.who, tc.instance, got, tc.exec)
		}
	}
}
