package configs

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/runner"
	"github.com/paddock-build/paddock/sandbox"
	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// TestVersionKey: a file without a version, or with one this binary does
// not read, is refused naming the file and the line.
func TestVersionKey(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ name, yaml, want string }{
		{"missing.yaml", "listen: a:1\n", "line 1: no version key"},
		{"empty.yaml", "", "line 1: no version key"},
		{"two.yaml", "# a comment\nversion: 2\nlisten: a:1\n", `line 2: version "2" is not one`},
		{"word.yaml", "listen: a:1\nversion: one\n", `line 2: version "one" is not one`},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultStorage()
		err := Load(p, &cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%s: %v, want an error naming the file and containing %q", tc.name, err, tc.want)
		}
	}
	p := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(p, []byte("listen: a:1\nversion: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultStorage()
	if err := Load(p, &cfg); err != nil || cfg.Listen != "a:1" {
		t.Fatalf("version last: %v, %+v", err, cfg)
	}
}

// TestExampleFilesLoad: every example in this directory loads strictly
// over its role's defaults and states them, so neither can drift.
func TestExampleFilesLoad(t *testing.T) {
	sched := DefaultScheduler()
	if err := Load("scheduler.yaml", &sched); err != nil {
		t.Fatal(err)
	}
	want := DefaultScheduler()
	want.RoutingProperties, want.ExecutionProperties = []string{}, []string{}
	if !reflect.DeepEqual(sched, want) {
		t.Errorf("scheduler.yaml loads as %+v, want the defaults %+v", sched, want)
	}

	run := DefaultRunner()
	if err := Load("runner.yaml", &run); err != nil {
		t.Fatal(err)
	}
	if rc := run.Config(); rc.Validate() != nil {
		t.Fatal(rc.Validate())
	}
	wantRun := DefaultRunner()
	wantRun.DefaultEnvironment = map[string]string{}
	wantRun.AcceptedProperties = []string{}
	wantRun.Images.Insecure = []string{}
	wantRun.Images.AllowedRegistries = []string{}
	wantRun.Images.Tenants = map[string]RunnerTenantImages{}
	wantRun.Sandbox.RuntimeArgs = []string{}
	if !reflect.DeepEqual(run, wantRun) {
		t.Errorf("runner.yaml:\n%+v\nwant the defaults:\n%+v", run, wantRun)
	}

	w := DefaultWorker()
	if err := Load("worker.yaml", &w); err != nil {
		t.Fatal(err)
	}
	wantW := DefaultWorker()
	wantW.Platform = []Property{}
	if !reflect.DeepEqual(w, wantW) {
		t.Errorf("worker.yaml:\n%+v\nwant the defaults:\n%+v", w, wantW)
	}

	up := DefaultUp("/var/lib/paddock")
	if err := Load("up.yaml", &up); err != nil {
		t.Fatal(err)
	}
	wantUp := DefaultUp("/var/lib/paddock")
	wantUp.Storage.Assets.AllowedHosts = []string{}
	if !reflect.DeepEqual(up, wantUp) {
		t.Errorf("up.yaml:\n%+v\nwant up's defaults:\n%+v", up, wantUp)
	}
}

// TestDefaultsAreThePackages: each role's defaults are the ones its
// package applies (they are taken from there, so this holds by
// construction; the test keeps it so).
func TestDefaultsAreThePackages(t *testing.T) {
	if got := DefaultScheduler().Config(); !reflect.DeepEqual(got, scheduler.DefaultConfig()) {
		t.Errorf("scheduler: %+v, want %+v", got, scheduler.DefaultConfig())
	}
	if got := DefaultRunner().Config(); !reflect.DeepEqual(got, runner.DefaultConfig()) {
		t.Errorf("runner: %+v, want %+v", got, runner.DefaultConfig())
	}
	w := DefaultWorker()
	if w.InputLimits() != worker.DefaultInputLimits() || w.OutputLimits() != worker.DefaultOutputLimits() {
		t.Errorf("worker limits %+v %+v, want %+v %+v", w.InputLimits(), w.OutputLimits(), worker.DefaultInputLimits(), worker.DefaultOutputLimits())
	}
	s := DefaultStorage()
	if s.MaxBatchTotalSizeBytes != storage.DefaultMaxBatchTotalSizeBytes || s.MaxInlineBytes != storage.DefaultMaxInlineBytes ||
		s.UploadIdleTimeout != storage.DefaultUploadIdleTimeout {
		t.Errorf("storage server limits %+v differ from the storage package's", s)
	}
	if s.Assets.FetchTimeout != asset.DefaultFetchTimeout || s.Assets.MaxFetchBytes != asset.DefaultMaxFetchBytes {
		t.Errorf("assets %+v differ from the asset package's defaults", s.Assets)
	}
}

// TestRunnerConversion: every field of the runner's file form reaches
// runner.Config and comes back (a field added to one and not the other,
// or dropped by the conversion, fails here).
func TestRunnerConversion(t *testing.T) {
	checkConversion(t, Runner.Config, runnerFile)
	checkSameFieldCount(t, Runner{}, runner.Config{})
	checkSameFieldCount(t, RunnerImages{}, runner.ImagesConfig{})
	checkSameFieldCount(t, RunnerSandbox{}, sandbox.Options{})
}

// TestSchedulingConversion: every field of the scheduler's file form
// reaches scheduler.Config and comes back (a field added to one and not
// the other, or dropped by the conversion, fails here).
func TestSchedulingConversion(t *testing.T) {
	checkConversion(t, Scheduling.Config, schedulingFile)
	checkSameFieldCount(t, Scheduling{}, scheduler.Config{})
}

// checkConversion fills every field of a file form F, converts it to its
// package's config C, checks that every field of C was set, and that
// converting back gives F again.
func checkConversion[F, C any](t *testing.T, toConfig func(F) C, toFile func(C) F) {
	t.Helper()
	var f F
	fillNonZero(t, reflect.ValueOf(&f).Elem(), "")
	c := toConfig(f)
	checkNonZero(t, reflect.ValueOf(c), reflect.TypeOf(c).String())
	if back := toFile(c); !reflect.DeepEqual(back, f) {
		t.Errorf("round trip:\n%+v\nwant\n%+v", back, f)
	}
}

// checkSameFieldCount checks that a file form's struct has as many fields
// as the config struct it converts to: a field added to one only is
// caught even where the round trip cannot see it.
func checkSameFieldCount(t *testing.T, file, config any) {
	t.Helper()
	ft, ct := reflect.TypeOf(file), reflect.TypeOf(config)
	if n, m := ft.NumField(), ct.NumField(); n != m {
		t.Errorf("%s has %d fields, %s %d", ft, n, ct, m)
	}
}

// fillNonZero sets every leaf of v to a value other than its zero.
func fillNonZero(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			fillNonZero(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
	case reflect.String:
		v.SetString("x" + path)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int64:
		v.SetInt(int64(7 + len(path)))
	case reflect.Uint32:
		v.SetUint(uint64(7 + len(path)))
	case reflect.Float64:
		v.SetFloat(1.5)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 1, 1))
		fillNonZero(t, v.Index(0), path+"[0]")
	case reflect.Map:
		k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
		fillNonZero(t, k, path+".key")
		fillNonZero(t, e, path+".value")
		v.Set(reflect.MakeMap(v.Type()))
		v.SetMapIndex(k, e)
	default:
		t.Fatalf("%s: fill a %s", path, v.Kind())
	}
}

// checkNonZero fails for every leaf of v left at its zero value.
func checkNonZero(t *testing.T, v reflect.Value, path string) {
	t.Helper()
	if v.Kind() == reflect.Struct {
		for i := range v.NumField() {
			checkNonZero(t, v.Field(i), path+"."+v.Type().Field(i).Name)
		}
		return
	}
	if v.IsZero() {
		t.Errorf("%s is not carried over", path)
	}
}

// TestMarshalRoundTrip: what --print-config prints loads back, over the
// defaults, to the same value, for every role.
func TestMarshalRoundTrip(t *testing.T) {
	st := DefaultStorage()
	st.Listen, st.MaxBytes, st.UploadIdleTimeout = "0.0.0.0:9", 3<<30+1, 90*time.Second
	st.Backend = &Backend{Remote: &RemoteStorage{Endpoint: "s:1", InstanceName: "i"}}
	st.Assets.AllowedHosts = []string{"example.com"}
	roundTrip(t, st, DefaultStorage)

	sc := DefaultScheduler()
	sc.Storage, sc.LeaseDuration, sc.RoutingProperties, sc.MaxRetries = "s:1", 45*time.Second, []string{"gpu"}, 0
	roundTrip(t, sc, DefaultScheduler)

	w := DefaultWorker()
	w.Scheduler, w.Dir, w.Platform, w.MaxInputBytes, w.Concurrency = "s:1", "/w", []Property{{"Pool", "a"}, {"Pool", "b"}}, 12345, 9
	roundTrip(t, w, DefaultWorker)

	r := DefaultRunner()
	r.DefaultEnvironment, r.DiskQuota, r.DefaultCPULimit, r.Sandbox.KillGrace = map[string]string{"A": "b"}, 0, 1.5, time.Second
	r.HostHiddenPaths = append(r.HostHiddenPaths, "/x")
	roundTrip(t, r, DefaultRunner)

	u := DefaultUp("/d")
	u.Worker.Concurrency, u.Runner.AllowHostNetwork, u.Scheduler.MaxRetries = 3, true, 5
	if err := u.Resolve(); err != nil {
		t.Fatal(err)
	}
	again := roundTrip(t, u, func() Up { return DefaultUp("/elsewhere") })
	if err := again.Resolve(); err != nil || !sameConfig(again, u) {
		t.Errorf("a printed up config resolves again to %+v (%v), want %+v", again, err, u)
	}
}

func roundTrip[T any](t *testing.T, cfg T, def func() T) T {
	t.Helper()
	b, err := Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "version: 1\n") {
		t.Errorf("printed config does not start with its version:\n%s", b)
	}
	got := def()
	if err := ParseFile(b, &got); err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, b)
	}
	if !sameConfig(got, cfg) {
		t.Errorf("printed config\n%s\nloads as\n%+v\nwant\n%+v", b, got, cfg)
	}
	if again, err := Marshal(got); err != nil || string(again) != string(b) {
		t.Errorf("printed again (%v):\n%s\nwant\n%s", err, again, b)
	}
	return got
}

// sameConfig is reflect.DeepEqual, except that an empty list or map is
// the same as none (as everything that reads a config treats them; YAML's
// [] loads as an empty one).
func sameConfig(a, b any) bool {
	return reflect.DeepEqual(emptiesToNil(reflect.ValueOf(a)), emptiesToNil(reflect.ValueOf(b)))
}

func emptiesToNil(v reflect.Value) any {
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				walk(v.Field(i))
			}
		case reflect.Pointer:
			if !v.IsNil() {
				p := reflect.New(v.Elem().Type())
				p.Elem().Set(v.Elem())
				walk(p.Elem())
				v.Set(p)
			}
		case reflect.Slice, reflect.Map:
			if v.Len() == 0 {
				v.Set(reflect.Zero(v.Type()))
			}
		}
	}
	walk(c)
	return c.Interface()
}

// TestUpResolve: up derives its layout from data, keeps what the file
// chose, and refuses the addresses it wires itself.
func TestUpResolve(t *testing.T) {
	u := DefaultUp("/d")
	u.Worker.Dir = "/fast/worker"
	if err := u.Resolve(); err != nil {
		t.Fatal(err)
	}
	if u.Storage.Dir != "/d/storage" || u.Scheduler.JournalDir != "/d/scheduler" || u.Worker.Dir != "/fast/worker" || u.Worker.ID != "local" ||
		u.Runner.Socket != "/d/runner.sock" || u.Runner.StateDir != "/d/runner" || u.Runner.Concurrency != u.Worker.Concurrency ||
		u.Runner.HostHiddenPaths[len(u.Runner.HostHiddenPaths)-1] != "/d" {
		t.Errorf("resolved as %+v", u)
	}
	one := DefaultUp("/d")
	one.Worker.Concurrency = 0 // a worker runs one action at a time
	if err := one.Resolve(); err != nil || one.Runner.Concurrency != 1 {
		t.Errorf("worker.concurrency 0: runner.concurrency %d (%v), want 1, as many as the worker runs", one.Runner.Concurrency, err)
	}
	for _, key := range []string{"scheduler.listen", "scheduler.storage", "worker.scheduler", "worker.runner"} {
		u := DefaultUp("/d")
		sec, field, _ := strings.Cut(key, ".")
		err := Parse([]byte(sec+":\n  "+field+": a:1\n"), &u)
		if err == nil {
			err = u.Resolve()
		}
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s set in up: %v, want an error naming it", key, err)
		}
	}
	// More actions at once than the runner has sandboxes: each one past
	// them was refused by the runner and failed within milliseconds.
	over := DefaultUp("/d")
	over.Worker.Concurrency, over.Runner.MaxSandboxes = 100, 64
	if err := over.Resolve(); err == nil || !strings.Contains(err.Error(), "worker.concurrency 100 is more than runner.max_sandboxes 64") {
		t.Errorf("concurrency past max_sandboxes: %v, want an error naming both", err)
	}
	if c := DefaultUp("/d").Worker.Concurrency; c > DefaultRunner().MaxSandboxes/2 || c < 1 {
		t.Errorf("up's default concurrency %d, want one per CPU, up to half of max_sandboxes %d", c, DefaultRunner().MaxSandboxes)
	}
	// A file's max_sandboxes is read after the default was taken: the
	// default follows it, rather than be refused for a value the file
	// never set.
	for _, ms := range []int{1, 2} {
		u := DefaultUp("/d")
		if err := Parse(fmt.Appendf(nil, "runner:\n  max_sandboxes: %d\n", ms), &u); err != nil {
			t.Fatal(err)
		}
		if err := u.Resolve(); err != nil || u.Worker.Concurrency != 1 {
			t.Errorf("max_sandboxes %d: concurrency %d (%v), want 1", ms, u.Worker.Concurrency, err)
		}
	}
	u = DefaultUp("rel")
	if err := u.Resolve(); err == nil || !strings.Contains(err.Error(), "data") {
		t.Errorf("relative data: %v", err)
	}
}

// TestSchedulerKeys: keys load strictly over the defaults; a misspelt one
// is an error naming it.
func TestSchedulerKeys(t *testing.T) {
	cfg := DefaultScheduler()
	err := Parse([]byte(`
listen: :1
max_action_timeout: 2h
lease_duration: 45s
max_retries: 5
routing_properties: [gpu]
execution_properties: [team-label]
`), &cfg)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != ":1" || cfg.MaxActionTimeout != 2*time.Hour || cfg.LeaseDuration != 45*time.Second || cfg.MaxRetries != 5 ||
		cfg.RoutingProperties[0] != "gpu" || cfg.HeartbeatInterval != 10*time.Second {
		t.Fatalf("loaded %+v", cfg)
	}
	if err := Parse([]byte("lease_duraton: 1s\n"), &cfg); err == nil || !strings.Contains(err.Error(), "lease_duraton") {
		t.Fatalf("misspelt key: %v, want an error naming it", err)
	}
}

// TestRunnerRefusals: unknown keys and bad values are errors naming them.
func TestRunnerRefusals(t *testing.T) {
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
		{"default_cpu_limit: 0.001\n", "default_cpu_limit"}, // below the kernel's least quota
		{"default_cpu_limit: .nan\n", "default_cpu_limit"},
		{"default_cpu_limit: .inf\n", "default_cpu_limit"},
		{"default_memory_limit: 2GiB\nmax_memory_limit: 1GiB\n", "max_memory_limit"},
		{"sandbox: {kill_grac: 1s}\n", "kill_grac"},
		{"images: {tenants: {team-a: {docker_config: team-a.json}}}\n", "images.tenants.team-a.docker_config"},
		{"images: {tenants: {team-a: {}}}\n", "images.tenants.team-a.docker_config"},
		{"images: {tenants: {team-a: {password: x}}}\n", "password"},
		{"images: {access_ttl: -1s}\n", "images.access_ttl"},
		{"sandbox: {kill_grace: -1s}\n", "sandbox.kill_grace"},
		{"sandbox: {output_limit: -9}\n", "sandbox.output_limit"},
		{"sandbox: {cgroup_parent: /}\n", "sandbox.cgroup_parent"},
		{"sandbox: {cgroup_parent: ../../x}\n", "sandbox.cgroup_parent"},
		{"sandbox: {cgroup_parent: a/../../x}\n", "sandbox.cgroup_parent"},
		{"sandbox: {cgroup_parent: a//b}\n", "sandbox.cgroup_parent"},
	} {
		cfg := DefaultRunner()
		err := Parse([]byte(tc.yaml), &cfg)
		if err == nil {
			rc := cfg.Config()
			err = rc.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.yaml, err, tc.want)
		}
	}
}

// TestWorkerRefusesNegativeCounts: zero means the default, a negative
// count is refused naming its key (the worker took it as the default).
func TestWorkerRefusesNegativeCounts(t *testing.T) {
	for _, key := range []string{"concurrency", "max_input_files", "max_input_depth", "max_output_files", "max_output_depth"} {
		cfg := DefaultWorker()
		if err := Parse([]byte(key+": -1\n"), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.CheckCounts(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: -1: %v, want an error naming it", key, err)
		}
		if err := Parse([]byte(key+": 0\n"), &cfg); err != nil {
			t.Fatal(err)
		}
		if err := cfg.CheckCounts(); err != nil {
			t.Errorf("%s: 0: %v, want the default", key, err)
		}
	}
}

// TestNoInlineSecrets: no key of any role holds a secret itself; a
// secret is a file path (…_file, docker_config) or a hash (…_sha256), so
// --print-config never prints one.
func TestNoInlineSecrets(t *testing.T) {
	seen := map[reflect.Type]bool{} // the backend tree is recursive
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, path string) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice || ty.Kind() == reflect.Map {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct || seen[ty] {
			return
		}
		seen[ty] = true
		for i := range ty.NumField() {
			f := ty.Field(i)
			key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			k := path + "." + key
			for _, word := range []string{"token", "password", "secret", "credential", "private"} {
				if strings.Contains(key, word) && !strings.HasSuffix(key, "_file") && !strings.HasSuffix(key, "_sha256") {
					t.Errorf("%s looks like an inline secret; take a file path instead", k)
				}
			}
			walk(f.Type, k)
		}
	}
	walk(reflect.TypeOf(Up{}), "up")
}
