package runner

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/sandbox"
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
	want.Images.Tenants = map[string]TenantImagesConfig{}
	want.Images.AccessTTL = 5 * time.Minute
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
		{"tmp_size: 1KiB\n", "tmp_size"},
		{"max_shm_size: 100\n", "max_shm_size"},
		{"concurrency: -1\n", "concurrency"},
		{"default_memory_limit: 2GiB\nmax_memory_limit: 1GiB\n", "max_memory_limit"},
		{"images: {tenants: {team-a: {docker_config: team-a.json}}}\n", "images.tenants.team-a.docker_config"},
		{"images: {tenants: {team-a: {}}}\n", "images.tenants.team-a.docker_config"},
		{"images: {tenants: {team-a: {password: x}}}\n", "password"},
		{"images: {access_ttl: -1s}\n", "images.access_ttl"},
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

// TestHostLimits: the memory defaults that depend on the host.
func TestHostLimits(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name                 string
		mod                  func(*Config)
		cpus                 int
		wantDefault, wantMax configs.ByteSize
		wantConcurrency      int
	}{
		{"host memory / CPUs", nil, 4, 4 * gib, 16 * gib, 4},
		{"host memory / concurrency", func(c *Config) { c.Concurrency = 8 }, 4, 2 * gib, 16 * gib, 8},
		{"explicit default", func(c *Config) { c.DefaultMemoryLimit = 3 * gib }, 4, 3 * gib, 16 * gib, 4},
		{"default capped by max", func(c *Config) { c.MaxMemoryLimit = 1 * gib }, 2, 1 * gib, 1 * gib, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			got := cfg.withHostLimits(16*gib, tc.cpus)
			if got.DefaultMemoryLimit != tc.wantDefault || got.MaxMemoryLimit != tc.wantMax || got.Concurrency != tc.wantConcurrency {
				t.Errorf("default %d max %d concurrency %d, want %d %d %d", got.DefaultMemoryLimit, got.MaxMemoryLimit, got.Concurrency,
					tc.wantDefault, tc.wantMax, tc.wantConcurrency)
			}
		})
	}
}

// TestSandboxConfigMirrorsOptions: the file form of the launcher's options
// has every field of sandbox.Options, of the same type, and carries each
// one over.
func TestSandboxConfigMirrorsOptions(t *testing.T) {
	opts, file := reflect.TypeOf(sandbox.Options{}), reflect.TypeOf(SandboxConfig{})
	if opts.NumField() != file.NumField() {
		t.Fatalf("sandbox.Options has %d fields, SandboxConfig %d", opts.NumField(), file.NumField())
	}
	c := SandboxConfig{}
	cv := reflect.ValueOf(&c).Elem()
	for i := range opts.NumField() {
		f := opts.Field(i)
		g, ok := file.FieldByName(f.Name)
		if !ok || g.Type != f.Type {
			t.Fatalf("SandboxConfig lacks %s %s", f.Name, f.Type)
		}
		v := cv.FieldByName(f.Name)
		switch v.Kind() {
		case reflect.String:
			v.SetString("x")
		case reflect.Int, reflect.Int64:
			v.SetInt(7)
		case reflect.Slice:
			v.Set(reflect.ValueOf([]string{"x"}))
		}
	}
	got := reflect.ValueOf(c.Options())
	for i := range opts.NumField() {
		if !reflect.DeepEqual(got.Field(i).Interface(), cv.FieldByName(opts.Field(i).Name).Interface()) {
			t.Errorf("Options() drops %s", opts.Field(i).Name)
		}
	}
}
