package configs

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestWrongTypesNameTheKey: a value of the wrong type is refused naming
// the key's path from the top of the file and its line, never a Go type
// (yaml.v3's own message was "line 3: cannot unmarshal !!int `30` into
// time.Duration"); a duration written as a bare number says it needs a
// unit.
func TestWrongTypesNameTheKey(t *testing.T) {
	for _, tc := range []struct{ role, yaml, want string }{
		{"scheduler", "version: 1\nstorage: s:1\nlease_duration: 30\n",
			"lease_duration: line 3: 30 is a number; a duration needs a unit, e.g. 30s"},
		{"scheduler", "version: 1\nlease_duration: \"30\"\n", "lease_duration: line 2: 30 is a number; a duration needs a unit, e.g. 30s"},
		{"scheduler", "version: 1\ntick_interval: 0.5\n", "tick_interval: line 2: 0.5 is a number; a duration needs a unit, e.g. 0.5s"},
		{"scheduler", "version: 1\nlease_duration: soon\n", `lease_duration: line 2: want a duration with a unit (90s, 15m, 1h), not "soon"`},
		{"scheduler", "version: 1\nrouting_properties: foo\n", `routing_properties: line 2: want a list, not "foo"; write [foo] for a list of one`},
		{"scheduler", "version: 1\nmax_retries: \"3\"\n", `max_retries: line 2: want a whole number, not "3" (a string: remove the quotes)`},
		{"scheduler", "version: 1\nmax_retries: [3]\n", "max_retries: line 2: want a whole number, not a list"},
		{"storage", "version: 1\ncheck_completeness: maybe\n", `check_completeness: line 2: want true or false, not "maybe"`},
		{"storage", "version: 1\nupload_idle_timeout: 60\n", "upload_idle_timeout: line 2: 60 is a number; a duration needs a unit, e.g. 60s"},
		{"storage", "version: 1\nlisten: {host: a}\n", "listen: line 2: want a string, not keys"},
		{"storage", "version: 1\nassets:\n  allowed_hosts: example.com\n",
			`assets.allowed_hosts: line 3: want a list, not "example.com"; write [example.com] for a list of one`},
		{"storage", "version: 1\nbackend:\n  disk:\n    dir: [a, b]\n", "backend.disk.dir: line 4: want a string, not a list"},
		{"storage", "version: 1\nbackend: {sharded: {shards: [{name: a, weight: heavy}]}}\n",
			`backend.sharded.shards[0].weight: line 2: want a number, not "heavy"`},
		{"worker", "version: 1\nconcurrency: four\n", `concurrency: line 2: want a whole number, not "four"`},
		{"worker", "version: 1\nplatform: Pool=a\n", `platform: line 2: want a list, not "Pool=a"`},
		{"worker", "version: 1\nplatform:\n- name: Pool\n  value: [a]\n", "platform[0].value: line 4: want a string, not a list"},
		{"runner", "version: 1\nid_base: -1\n", `id_base: line 2: want a whole number from 0 to 4294967295, not "-1"`},
		{"runner", "version: 1\ndefault_environment: A=B\n", `default_environment: line 2: want keys under it, not "A=B"`},
		{"runner", "version: 1\ndefault_environment: {A: [b]}\n", "default_environment.A: line 2: want a string, not a list"},
		{"runner", "version: 1\nsandbox:\n  kill_grace: 5\n", "sandbox.kill_grace: line 3: 5 is a number; a duration needs a unit, e.g. 5s"},
		{"runner", "version: 1\nimages: {refresh_tags: 3600}\n", "images.refresh_tags: line 2: 3600 is a number; a duration needs a unit, e.g. 3600s"},
		{"runner", "version: 1\ndefault_cpu_limit: lots\n", `default_cpu_limit: line 2: want a number, not "lots"`},
		{"up", "version: 1\ndata: /d\nscheduler:\n  lease_duration: 30\n",
			"scheduler.lease_duration: line 4: 30 is a number; a duration needs a unit, e.g. 30s"},
		{"up", "version: 1\ndata: /d\nscheduler: {routing_properties: foo}\n", `scheduler.routing_properties: line 3: want a list, not "foo"`},
		{"up", "version: 1\ndata: /d\nstorage:\n  backend:\n    disk:\n      dir: {a: 1}\n", "storage.backend.disk.dir: line 6: want a string, not keys"},
		{"up", "version: 1\ndata: [/d]\n", "data: line 2: want a string, not a list"},
		{"up", "version: 1\ndata: /d\nworker: {concurrency: yes}\n", `worker.concurrency: line 3: want a whole number, not "yes"`},
		{"runner", "version: 1\nsandbox: {[a]: 1}\n", "sandbox: line 2: a key is a name, not a list"},
		{"storage", "- version: 1\n", "line 1: want keys, starting with `version: 1`, not a list"},
	} {
		checkRefused(t, tc.role, tc.yaml, tc.want)
	}
}

// TestEmptyValuesAreRefused: a key written with no value (`max_bytes:`,
// `max_retries: ~`) is refused naming it; it silently kept the default
// (and `host_hidden_paths:` emptied the runner's list of hidden paths).
// An empty section and an optional key left null (what --print-config
// writes for a backend kind not set) still load.
func TestEmptyValuesAreRefused(t *testing.T) {
	for _, tc := range []struct{ role, yaml, want string }{
		{"storage", "version: 1\nmax_bytes:\n", "max_bytes: line 2: the value is empty; remove the line for the default"},
		{"storage", "version: 1\nbackend:\n  disk:\n    dir: /d\n    max_bytes:\n", "backend.disk.max_bytes: line 5: the value is empty; remove the line for the default"},
		{"storage", "version: 1\nlisten: null\n", "listen: line 2: the value is empty"},
		{"scheduler", "version: 1\nmax_retries: ~\n", "max_retries: line 2: the value is empty; remove the line for the default"},
		{"scheduler", "version: 1\nlease_duration:\nstorage: s:1\n", "lease_duration: line 2: the value is empty"},
		{"scheduler", "version: 1\nrouting_properties:\n", "routing_properties: line 2: the value is empty; remove the line for the default, or write [] for none"},
		{"worker", "version: 1\nconcurrency: ~\n", "concurrency: line 2: the value is empty"},
		{"runner", "version: 1\nhost_hidden_paths:\n", "host_hidden_paths: line 2: the value is empty; remove the line for the default, or write [] for none"},
		{"runner", "version: 1\ndefault_environment: ~\n", "default_environment: line 2: the value is empty; remove the line for the default, or write {} for none"},
		{"runner", "version: 1\nsandbox: {runtime: }\n", "sandbox.runtime: line 2: the value is empty"},
		{"up", "version: 1\ndata:\n", "data: line 2: the value is empty"},
		{"up", "version: 1\ndata: /d\nworker:\n  cache_size:\n", "worker.cache_size: line 4: the value is empty"},
		{"up", "version: 1\ndata: /d\nscheduler: {routing_properties: [gpu, ~]}\n", "scheduler.routing_properties[1]: line 3: the value is empty"},
	} {
		checkRefused(t, tc.role, tc.yaml, tc.want)
	}
	for _, good := range []string{
		"version: 1\ndata: /d\nworker:\n",
		"version: 1\ndata: /d\nstorage: {backend: ~}\n",
		"version: 1\ndata: /d\nstorage: {backend: {disk: {dir: /d}, remote: null}}\n",
		"version: 1\ndata: /d\nstorage: {backend: {sharded: {shards: [{name: a, weight: ~, backend: {disk: {dir: /a}}}]}}}\n",
	} {
		cfg := DefaultUp("/d")
		if err := ParseFile([]byte(good), &cfg); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
}

// TestVersionMustBeTheNumber: `version: "1"` is a string in YAML; it is
// refused saying so (it read "version \"1\" is not one this paddock
// reads (want 1)"), and an empty version is called empty, not missing.
func TestVersionMustBeTheNumber(t *testing.T) {
	for _, tc := range []struct{ role, yaml, want string }{
		{"scheduler", "storage: s:1\nversion: \"1\"\n", `line 2: version must be the number 1, not the string "1"; remove the quotes`},
		{"storage", "version: '1'\n", `line 1: version must be the number 1, not the string "1"; remove the quotes`},
		{"worker", "version:\nconcurrency: 2\n", "line 1: version is empty; start the file with `version: 1`"},
		{"runner", "version: ~\n", "line 1: version is empty"},
	} {
		checkRefused(t, tc.role, tc.yaml, tc.want)
	}
}

// TestAnchorContainingItself: an anchor whose value names itself is
// refused by Decode; the check before it followed the alias until the
// stack overflowed, which killed the process.
func TestAnchorContainingItself(t *testing.T) {
	for _, y := range []string{
		"version: 1\n<<: &m {<<: *m}\n",
		"version: 1\nrouting_properties: &l [*l]\n",
		"version: 1\nbackend: &b {mirrored: {backends: [*b, *b]}}\n",
		"<<: &m {<<: *m}\n",
	} {
		cfg := DefaultStorage()
		if err := ParseFile([]byte(y), &cfg); err == nil {
			t.Errorf("%q: loaded", y)
		}
	}
}

// checkRefused loads yaml as role's file and wants an error naming the
// file and saying want, and no Go type.
func checkRefused(t *testing.T, role, yaml, want string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), role+".yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	err := loadRole(role, p)
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), p) {
		t.Errorf("%s %q:\n got %v\nwant an error naming the file and saying %s", role, yaml, err, want)
		return
	}
	if msg := err.Error(); strings.Contains(msg, "unmarshal") || strings.Contains(msg, "configs.") || strings.Contains(msg, "time.Duration") {
		t.Errorf("%s %q: %v names a Go type", role, yaml, err)
	}
}

// TestEveryKeyNamesItselfWhenWrong walks every key of every role's file
// (up's sections, the backend tree, list elements and map values) and
// writes it with a value of the wrong kind (keys where one value is
// wanted, a list where keys are) and empty: each is refused naming the
// key's path and line, except an empty optional key or section, which
// loads. A key added later is held to the same rule.
func TestEveryKeyNamesItselfWhenWrong(t *testing.T) {
	for _, role := range everyRole {
		n := 0
		walkKeys(reflect.TypeOf(role.def()).Elem(), nil, map[reflect.Type]bool{}, func(path []keyStep, ty reflect.Type) {
			n++
			base := ty
			for base.Kind() == reflect.Pointer {
				base = base.Elem()
			}
			wrong := "{a: 1}"
			if base.Kind() == reflect.Struct || base.Kind() == reflect.Map {
				wrong = "[1]"
			}
			want := pathString(path) + ": line 2: "
			err := parseInto("version: 1\n"+fileWith(path, wrong), role.def())
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Errorf("%s: %s: %s: %v, want an error starting %q", role.name, pathString(path), wrong, err, want)
			}
			err = parseInto("version: 1\n"+fileWith(path, "~"), role.def())
			switch {
			case ty.Kind() == reflect.Pointer || base.Kind() == reflect.Struct:
				if err != nil {
					t.Errorf("%s: %s: ~ (not set): %v", role.name, pathString(path), err)
				}
			case err == nil || !strings.HasPrefix(err.Error(), want+"the value is empty"):
				t.Errorf("%s: %s: ~: %v, want an error starting %q", role.name, pathString(path), err, want+"the value is empty")
			}
		})
		if n < 10 {
			t.Errorf("%s: only %d keys found", role.name, n)
		}
	}
}

// walkKeys calls found for every key under ty with its Go type: a
// struct's fields, inline ones at its level, and below a list of
// sections its first element's keys, below a map its value at key "x".
// onPath holds the struct types on the current path (the backend tree is
// recursive).
func walkKeys(ty reflect.Type, path []keyStep, onPath map[reflect.Type]bool, found func([]keyStep, reflect.Type)) {
	for ty.Kind() == reflect.Pointer {
		ty = ty.Elem()
	}
	switch ty.Kind() {
	case reflect.Slice:
		if e := ty.Elem(); e.Kind() == reflect.Struct || e.Kind() == reflect.Pointer {
			inner := append([]keyStep(nil), path...)
			inner[len(inner)-1].list = true
			walkKeys(e, inner, onPath, found)
		}
	case reflect.Map:
		p := append(append([]keyStep(nil), path...), keyStep{key: "x"})
		found(p, ty.Elem())
		walkKeys(ty.Elem(), p, onPath, found)
	case reflect.Struct:
		if onPath[ty] {
			return
		}
		onPath[ty] = true
		defer delete(onPath, ty)
		for _, f := range reflect.VisibleFields(ty) {
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if opts == "inline" || name == "" || name == "-" || len(f.Index) > 1 && !inlinePath(ty, f.Index) {
				continue
			}
			p := append(append([]keyStep(nil), path...), keyStep{key: name})
			found(p, f.Type)
			walkKeys(f.Type, p, onPath, found)
		}
	}
}
