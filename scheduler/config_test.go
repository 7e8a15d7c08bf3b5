package scheduler

import (
	"strings"
	"testing"

	"github.com/paddock-build/paddock/storage"
)

func TestNewRejectsInconsistentConfig(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HeartbeatInterval = cfg.LeaseDuration
	if _, err := New(Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache()}); err == nil {
		t.Fatal("heartbeat_interval >= lease_duration accepted")
	}
	if _, err := New(Options{Config: DefaultConfig()}); err == nil {
		t.Fatal("New without storage succeeded")
	}
	// Defaults live in DefaultConfig only: New does not fill in a zero
	// value, it refuses it, naming the key.
	cfg = DefaultConfig()
	cfg.LeaseDuration = 0
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "lease_duration") {
		t.Fatalf("a zero lease_duration: %v, want an error naming it", err)
	}
}
