package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWholeNumbers: a float where a key wants an integer is refused with
// the key and the line, at any depth (an up section, an inline group of
// keys), through an alias or a merge key too, not truncated; float keys
// and sizes still take theirs.
func TestWholeNumbers(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ yaml, want string }{
		{"version: 1\ndata: /d\nworker:\n  concurrency: 4.5\n", "concurrency: line 4: 4.5 is not a whole number"},
		{"version: 1\ndata: /d\nscheduler:\n  max_retries: 2.7\n", "max_retries: line 4: 2.7 is not a whole number"},
		{"version: 1\ndata: /d\nscheduler:\n  max_queued_per_instance: 1e3\n", "1e3 is not a whole number"},
		{"version: 1\ndata: /d\nrunner: {default_cpu_limit: &c 1.5}\nworker: {concurrency: *c}\n", "concurrency: line 3: 1.5 is not a whole number"},
		{"version: 1\ndata: /d\nworker: {<<: {concurrency: 4.5}}\n", "concurrency: line 3: 4.5 is not a whole number"},
		{"version: 1.0\ndata: /d\n", `version "1.0" is not one`},
	} {
		p := filepath.Join(dir, "up.yaml")
		if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := DefaultUp("/d")
		if err := Load(p, &cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.yaml, err, tc.want)
		}
	}
	p := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(p, []byte("version: 1\ndata: /d\nworker:\n  concurrency: 4\n  cache_size: 1GiB\nrunner:\n  default_cpu_limit: 1.5\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultUp("/d")
	if err := Load(p, &cfg); err != nil || cfg.Worker.Concurrency != 4 || cfg.Runner.DefaultCPULimit != 1.5 {
		t.Fatalf("good file: %v, %+v", err, cfg)
	}
}
