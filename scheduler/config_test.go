package scheduler

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/storage"
)

func TestConfigLoadsStrictlyOverDefaults(t *testing.T) {
	cfg := DefaultConfig()
	err := configs.Parse([]byte(`
max_action_timeout: 2h
lease_duration: 45s
max_retries: 5
routing_properties: [gpu]
execution_properties: [team-label]
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxActionTimeout != 2*time.Hour || cfg.LeaseDuration != 45*time.Second || cfg.MaxRetries != 5 ||
		cfg.RoutingProperties[0] != "gpu" || cfg.HeartbeatInterval != 10*time.Second {
		t.Fatalf("loaded %+v", cfg)
	}
	if err := configs.Parse([]byte("lease_duraton: 1s\n"), &cfg); err == nil || !strings.Contains(err.Error(), "lease_duraton") {
		t.Fatalf("misspelt key: %v, want an error naming it", err)
	}
}

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

func TestExampleConfigMatchesDefaults(t *testing.T) {
	cfg := DefaultConfig()
	if err := configs.Load("../configs/scheduler.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.RoutingProperties, want.ExecutionProperties = []string{}, []string{}
	if !reflect.DeepEqual(cfg, want) {
		t.Fatalf("configs/scheduler.yaml loads as %+v, want the defaults %+v", cfg, want)
	}
}
