package runner

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/paddock-build/paddock/api/runnerpb"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fakeIDDB is an /etc/passwd and /etc/group in memory.
type fakeIDDB struct {
	users  map[string][2]uint32 // name -> uid, gid
	groups map[string]uint32
}

func (f fakeIDDB) lookupUser(name string, byID bool) (uint32, uint32, bool) {
	for n, ids := range f.users {
		if (!byID && n == name) || (byID && fmt.Sprint(ids[0]) == name) {
			return ids[0], ids[1], true
		}
	}
	return 0, 0, false
}

func (f fakeIDDB) lookupGroup(name string) (uint32, bool) {
	g, ok := f.groups[name]
	return g, ok
}

// specCase is one golden test of parsePlatform → chooseUser → buildSpec.
type specCase struct {
	name      string
	props     map[string]string // platform properties (sorted by name when sent)
	cfg       func(*Config)
	req       func(*runnerpb.RunRequest)
	image     bool // an image rootfs (no host binds) with imageEnv and imageUser
	imageEnv  []string
	imageUser string
}

var specCases = []specCase{
	{name: "minimal"},
	{name: "working_directory", req: func(r *runnerpb.RunRequest) { r.WorkingDirectory = "pkg/sub" }},
	{name: "default_environment", cfg: func(c *Config) { c.DefaultEnvironment = map[string]string{"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"} }},
	{name: "image_environment_ignored", image: true, imageEnv: []string{"PATH=/opt/bin", "JAVA_HOME=/opt/jdk"}},
	{name: "image_environment_merged", image: true, imageEnv: []string{"PATH=/opt/bin", "JAVA_HOME=/opt/jdk", "HOME=/image"},
		cfg: func(c *Config) { c.MergeImageEnvironment = true }},
	{name: "image_user", image: true, imageUser: "1000:1001"},
	{name: "image_user_by_name", image: true, imageUser: "builder"},
	{name: "image_user_unknown", image: true, imageUser: "nobody-here"},
	{name: "docker_user_overrides_image", image: true, imageUser: "1000", props: map[string]string{"dockerUser": "2000:staff"}},
	{name: "docker_user_uid_only", props: map[string]string{"dockerUser": "1000"}},
	{name: "docker_user_out_of_range", props: map[string]string{"dockerUser": "70000"}},
	{name: "run_as_root_overrides_default", cfg: func(c *Config) { c.DefaultUser = "1000:1000" }, props: map[string]string{"dockerRunAsRoot": "true"}},
	{name: "run_as_root_and_user_conflict", props: map[string]string{"dockerRunAsRoot": "true", "dockerUser": "1"}},
	{name: "network_standard", props: map[string]string{"dockerNetwork": "standard"}, cfg: func(c *Config) { c.AllowHostNetwork = true }},
	{name: "network_standard_not_allowed", props: map[string]string{"dockerNetwork": "standard"}},
	{name: "network_off", props: map[string]string{"dockerNetwork": "off"}},
	{name: "network_bad", props: map[string]string{"dockerNetwork": "bridge"}},
	{name: "input_root_path", props: map[string]string{"InputRootAbsolutePath": "/b/f/w"}, req: func(r *runnerpb.RunRequest) { r.WorkingDirectory = "out" }},
	{name: "input_root_path_relative", props: map[string]string{"InputRootAbsolutePath": "work"}},
	{name: "input_root_path_unclean", props: map[string]string{"InputRootAbsolutePath": "/work/../etc"}},
	{name: "input_root_path_proc", props: map[string]string{"InputRootAbsolutePath": "/proc/self"}},
	{name: "estimated_cpu_memory", props: map[string]string{"EstimatedCPU": "1.5", "EstimatedMemory": "2g"}},
	{name: "default_limits", cfg: func(c *Config) { c.DefaultCPULimit = 2; c.DefaultMemoryLimit = 1 << 30; c.PidsLimit = 100 }},
	{name: "estimated_memory_bad", props: map[string]string{"EstimatedMemory": "lots"}},
	{name: "estimated_cpu_bad", props: map[string]string{"EstimatedCPU": "-1"}},
	{name: "shm_size", props: map[string]string{"dockerShmSize": "256MiB"}},
	{name: "shm_size_tiny", props: map[string]string{"dockerShmSize": "1k"}},
	{name: "shm_size_above_memory", props: map[string]string{"dockerShmSize": "1TiB"}},
	{name: "shm_size_above_max", props: map[string]string{"dockerShmSize": "256MiB"}, cfg: func(c *Config) { c.MaxShmSize = 128 << 20 }},
	{name: "shm_size_within_max", props: map[string]string{"dockerShmSize": "8GiB", "EstimatedMemory": "1GiB"}, cfg: func(c *Config) { c.MaxShmSize = 8 << 30 }},
	{name: "memory_above_max", props: map[string]string{"EstimatedMemory": "1TiB"}},
	{name: "tmp_size", props: map[string]string{"EstimatedMemory": "2GiB"}, cfg: func(c *Config) { c.TmpSize = 512 << 20 }},
	{name: "capabilities_add_drop", props: map[string]string{"dockerAddCapabilities": "sys_ptrace,CAP_NET_ADMIN", "dockerDropCapabilities": "NET_RAW,MKNOD"}},
	{name: "capabilities_drop_all_add_one", props: map[string]string{"dockerAddCapabilities": "CHOWN", "dockerDropCapabilities": "ALL"}},
	{name: "capabilities_unknown", props: map[string]string{"dockerAddCapabilities": "CAP_FLY"}},
	{name: "privileged_refused", props: map[string]string{"dockerPrivileged": "true"}},
	{name: "privileged_allowed", props: map[string]string{"dockerPrivileged": "true"}, cfg: func(c *Config) { c.AllowPrivileged = true }},
	{name: "privileged_false", props: map[string]string{"dockerPrivileged": "false"}},
	{name: "privileged_bad_bool", props: map[string]string{"dockerPrivileged": "yes"}},
	{name: "unknown_property", props: map[string]string{"dockerSeccomp": "unconfined"}},
	{name: "accepted_property", props: map[string]string{"gpu": "none"}, cfg: func(c *Config) { c.AcceptedProperties = []string{"gpu"} }},
	{name: "routing_keys_ignored", props: map[string]string{"OSFamily": "Linux", "ISA": "x86-64", "Arch": "amd64", "Pool": "default"}},
	{name: "container_image_none", props: map[string]string{"container-image": "none"}},
	{name: "container_image_bad", props: map[string]string{"container-image": "docker://Registry/UPPER case"}},
	{name: "property_given_twice", props: map[string]string{"dockerNetwork": "off"}, req: func(r *runnerpb.RunRequest) {
		r.Platform = append(r.Platform, &runnerpb.Property{Name: "dockerNetwork", Value: "standard"})
	}},
	{name: "no_arguments", req: func(r *runnerpb.RunRequest) { r.Arguments = nil }},
	{name: "env_name_with_equals", req: func(r *runnerpb.RunRequest) {
		r.EnvironmentVariables = append(r.EnvironmentVariables, &runnerpb.EnvironmentVariable{Name: "A=B", Value: "x"})
	}},
	{name: "env_duplicate", req: func(r *runnerpb.RunRequest) {
		r.EnvironmentVariables = append(r.EnvironmentVariables, &runnerpb.EnvironmentVariable{Name: "PATH", Value: "x"})
	}},
	{name: "working_directory_escapes", req: func(r *runnerpb.RunRequest) { r.WorkingDirectory = "../x" }},
}

// goldenSpec renders a case's spec, or its error, deterministically.
func goldenSpec(c specCase) []byte {
	cfg := DefaultConfig()
	cfg.IDBase = 1_000_000
	if c.cfg != nil {
		c.cfg(&cfg)
	}
	// As New does, on a host with 16 GiB and 4 CPUs.
	cfg = cfg.WithHostLimits(16<<30, 4)
	req := &runnerpb.RunRequest{
		ActionId:  "operations/1234-0",
		InputRoot: "/var/lib/paddock/build/1234-0/root",
		Arguments: []string{"/usr/bin/gcc", "-c", "a.c", "-o", "a.o"},
		EnvironmentVariables: []*runnerpb.EnvironmentVariable{
			{Name: "PATH", Value: "/bin:/usr/bin"}, {Name: "PWD", Value: "/proc/self/cwd"},
		},
		Timeout: durationpb.New(0),
	}
	for _, name := range sortedKeys(c.props) {
		req.Platform = append(req.Platform, &runnerpb.Property{Name: name, Value: c.props[name]})
	}
	if c.req != nil {
		c.req(req)
	}
	fail := func(err error) []byte {
		st := status.Convert(err)
		return []byte(fmt.Sprintf("error: %s: %s\n", st.Code(), st.Message()))
	}
	plat, err := parsePlatform(&cfg, req.Platform)
	if err != nil {
		return fail(err)
	}
	in := specInput{Config: &cfg, Request: req, Platform: plat, IDBase: cfg.IDBase,
		Rootfs: "/var/lib/paddock/runner/bundles/1-operations_1234-0/rootfs"}
	db := fakeIDDB{users: map[string][2]uint32{"root": {0, 0}, "builder": {1500, 1600}}, groups: map[string]uint32{"staff": 50}}
	if c.image {
		in.Rootfs, in.ImageEnv = "/var/lib/paddock/runner/images/rootfs/sha256-abc", c.imageEnv
	} else {
		in.HostBinds = []specs.Mount{
			{Destination: "/etc", Type: "bind", Source: "/etc", Options: hostBindOptions},
			{Destination: "/usr", Type: "bind", Source: "/usr", Options: hostBindOptions},
		}
	}
	if in.User, err = chooseUser(&cfg, plat, c.imageUser, db); err != nil {
		return fail(err)
	}
	spec, err := buildSpec(in)
	if err != nil {
		return fail(err)
	}
	b, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return fail(err)
	}
	return append(b, '\n')
}

func sortedKeys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

// TestSpecGolden checks the spec (or the refusal) of every case against
// testdata/spec/<name>.golden; run with -update to rewrite them after an
// intended change, and review the diff.
func TestSpecGolden(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range specCases {
		t.Run(c.name, func(t *testing.T) {
			if seen[c.name] {
				t.Fatalf("duplicate case name")
			}
			seen[c.name] = true
			got := goldenSpec(c)
			file := filepath.Join("testdata", "spec", c.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(file, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(file)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("spec differs from %s (run with -update and review the diff):\n%s", file, got)
			}
		})
	}
	ents, _ := os.ReadDir(filepath.Join("testdata", "spec"))
	for _, e := range ents {
		if name := e.Name(); !seen[name[:len(name)-len(".golden")]] {
			t.Errorf("stale golden file %s", name)
		}
	}
}
