package runner

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/configs"
)

// TestExampleConfigLoads: configs/runner.yaml loads strictly, validates,
// and states the defaults (so the example cannot drift from them).
func TestExampleConfigLoads(t *testing.T) {
	cfg := DefaultConfig()
	if err := configs.Load("../configs/runner.yaml", &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	want := DefaultConfig()
	want.DefaultEnvironment = map[string]string{}
	want.AcceptedProperties = []string{}
	want.Images.Insecure = []string{}
	want.Images.RefreshTags = 5 * time.Minute
	want.Sandbox.CgroupParent = "paddock-sandbox"
	want.Sandbox.KillGrace = 2 * time.Second
	want.Sandbox.RuntimeArgs = []string{}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("example config:\n%+v\nwant the defaults:\n%+v", cfg, want)
	}
}

// TestConfigRefusals: unknown keys and bad values are errors naming them.
func TestConfigRefusals(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"pids_limt: 10\n", "pids_limt"},
		{"input_root_path: work\n", "input_root_path"},
		{"input_root_path: /proc/w\n", "input_root_path"},
		{"state_dir: state\n", "state_dir"},
		{"default_user: 99999\n", "default_user"},
		{"id_base: 0\n", "id_base"},
		{"max_sandboxes: 70000\n", "max_sandboxes"},
		{"host_hidden_paths: [/var/lib/../x]\n", "host_hidden_paths"},
		{"default_environment: {\"A=B\": x}\n", "default_environment"},
	} {
		cfg := DefaultConfig()
		err := configs.Parse([]byte(tc.yaml), &cfg)
		if err == nil {
			err = cfg.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.yaml, err, tc.want)
		}
	}
}
