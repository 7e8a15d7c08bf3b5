package main

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestAdminHintNamesWhereTheAdminAPIIs: drain and undrain pointed at a
// port without the admin API (a scheduler's client port when it has
// --worker-listen) say where it is, beside gRPC's bare "unknown service";
// other errors are left as they are.
func TestAdminHintNamesWhereTheAdminAPIIs(t *testing.T) {
	if h := adminHint(status.Error(codes.Unimplemented, "unknown service paddock.worker.v1.AdminService")); !strings.Contains(h, "--worker-listen") || !strings.Contains(h, "scheduler.sock") {
		t.Errorf("hint for UNIMPLEMENTED: %q", h)
	}
	if h := adminHint(status.Error(codes.NotFound, "no worker w9")); h != "" {
		t.Errorf("hint for NOT_FOUND: %q, want none", h)
	}
}
