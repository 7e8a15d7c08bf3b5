package configs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnknownKeyNamesTheFile: an unknown key is refused naming its line,
// its path from the top of the file and the role's file it is in, never a
// Go type, with the nearest known key when one is within two edits.
func TestUnknownKeyNamesTheFile(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		role, yaml, want string
	}{
		{"worker", "version: 1\nscheduler: s:1\nconcurency: 4\n",
			`line 3: unknown key "concurency" in the worker config; did you mean "concurrency"?`},
		{"up", "version: 1\ndata: /d\nworker:\n  concurency: 4\n",
			`line 4: unknown key "worker.concurency" in the up config; did you mean "worker.concurrency"?`},
		{"runner", "version: 1\nsandbox:\n  kill_grac: 1s\n",
			`line 3: unknown key "sandbox.kill_grac" in the runner config; did you mean "sandbox.kill_grace"?`},
		{"storage", "version: 1\nbackend:\n  sharded:\n    shards:\n    - {name: a, backend: {dsk: {dir: /x}}}\n",
			`line 5: unknown key "backend.sharded.shards[0].backend.dsk" in the storage config; did you mean "backend.sharded.shards[0].backend.disk"?`},
		{"scheduler", "version: 1\nlease_duraton: 1s\n",
			`line 2: unknown key "lease_duraton" in the scheduler config; did you mean "lease_duration"?`},
		{"scheduler", "verison: 1\nversion: 1\n", `line 1: unknown key "verison" in the scheduler config; did you mean "version"?`},
		{"worker", "version: 1\nbase: &b {concurency: 4}\n", `line 2: unknown key "base" in the worker config`},
		{"worker", "version: 1\n<<: {concurency: 4}\n", `line 2: unknown key "concurency" in the worker config; did you mean "concurrency"?`},
		{"storage", "version: 1\ncolour: blue\n", `line 2: unknown key "colour" in the storage config`},
	} {
		p := filepath.Join(dir, tc.role+".yaml")
		if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		err := loadRole(tc.role, p)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), p) {
			t.Errorf("%s %q:\n got %v\nwant an error naming the file and saying %s", tc.role, tc.yaml, err, tc.want)
			continue
		}
		if msg := err.Error(); strings.Contains(msg, "configs.") || strings.Contains(msg, "versioned") || strings.Contains(msg, "github.com") {
			t.Errorf("%s %q: %v names a Go type", tc.role, tc.yaml, err)
		}
		if strings.HasSuffix(tc.want, "config") && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%s %q: %v suggests a key nothing like it", tc.role, tc.yaml, err)
		}
	}
}

// loadRole is Load over the role's defaults (up's for any other role).
func loadRole(role, path string) error {
	loads := map[string]func() error{
		"storage":   func() error { c := DefaultStorage(); return Load(path, &c) },
		"scheduler": func() error { c := DefaultScheduler(); return Load(path, &c) },
		"worker":    func() error { c := DefaultWorker(); return Load(path, &c) },
		"runner":    func() error { c := DefaultRunner(); return Load(path, &c) },
		"up":        func() error { c := DefaultUp("/d"); return Load(path, &c) },
	}
	if load, ok := loads[role]; ok {
		return load()
	}
	return loads["up"]()
}

// TestJournalSyncCheckedWhenRead: journal_sync, which scheduler.Config's
// Validate lets through and the journal refused only when the scheduler
// opened it, is refused when the file is read (so --print-config and
// `paddock up` refuse it too), naming the key and the values it takes; the
// values it takes load.
func TestJournalSyncCheckedWhenRead(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ role, yaml, want string }{
		{"scheduler", "version: 1\njournal_sync: sometimes\n", `journal_sync: line 2: journal sync policy "sometimes": want fsync or write`},
		{"scheduler", "version: 1\njournal_sync: FSYNC\n", `journal_sync: line 2: journal sync policy "FSYNC": want fsync or write`},
		{"up", "version: 1\ndata: /d\nscheduler: {journal_sync: never}\n", `scheduler.journal_sync: line 3: journal sync policy "never": want fsync or write`},
		{"up", "version: 1\ndata: /d\nscheduler: {journal_dir: &s sometimes, journal_sync: *s}\n", `scheduler.journal_sync: line 3: journal sync policy "sometimes"`},
		{"scheduler", "version: 1\n<<: {journal_sync: sometimes}\n", `journal_sync: line 2: journal sync policy "sometimes"`},
	} {
		p := filepath.Join(dir, tc.role+".yaml")
		if err := os.WriteFile(p, []byte(tc.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := loadRole(tc.role, p); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.yaml, err, tc.want)
		}
	}
	for _, v := range []string{"fsync", "write"} {
		cfg := DefaultScheduler()
		if err := ParseFile([]byte("version: 1\njournal_sync: "+v+"\n"), &cfg); err != nil || cfg.JournalSync != v {
			t.Errorf("journal_sync: %s: %v, %q", v, err, cfg.JournalSync)
		}
	}
}

// TestUpResolveChecksTheBackend: up's storage.backend is checked by
// Resolve, which `paddock up --print-config` runs, as the storage role
// checks its own before printing; up used to refuse it only at start.
func TestUpResolveChecksTheBackend(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"storage: {backend: {}}\n", "storage.backend: exactly one of"},
		{"storage: {backend: {disk: {max_bytes: 1GiB}}}\n", "storage.backend.disk.dir: must be set"},
		{"storage: {backend: {cached: {dir: /c, max_bytes: 1GiB, backend: {s3: {bucket: b}}}}}\n", "storage.backend.cached.backend.s3.endpoint"},
	} {
		u := DefaultUp("/d")
		if err := Parse([]byte(tc.yaml), &u); err != nil {
			t.Fatal(err)
		}
		if err := u.Resolve(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.yaml, err, tc.want)
		}
	}
	u := DefaultUp("/d")
	if err := Parse([]byte("storage: {backend: {disk: {dir: /x, max_bytes: 1GiB}}}\n"), &u); err != nil {
		t.Fatal(err)
	}
	if err := u.Resolve(); err != nil {
		t.Errorf("a good backend: %v", err)
	}
}

// TestSectionWantsKeys: a value where a section of keys is wanted is
// refused naming the key, not the Go type it would have decoded into.
func TestSectionWantsKeys(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"version: 1\ndata: /d\nworker: 4\n", `worker: line 3: want keys under it, not "4"`},
		{"version: 1\ndata: /d\nrunner: {sandbox: [a]}\n", "runner.sandbox: line 3: want keys under it, not a list"},
	} {
		cfg := DefaultUp("/d")
		err := ParseFile([]byte(tc.yaml), &cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "configs.") {
			t.Errorf("%q: %v, want an error saying %q", tc.yaml, err, tc.want)
		}
	}
	cfg := DefaultUp("/d")
	if err := ParseFile([]byte("version: 1\ndata: /d\nworker:\n"), &cfg); err != nil || cfg.Worker.Concurrency != DefaultUp("/d").Worker.Concurrency {
		t.Errorf("an empty section: %v, %+v", err, cfg.Worker)
	}
	for _, empty := range []string{"", "# nothing\n"} {
		if err := Parse([]byte(empty), &cfg); err != nil {
			t.Errorf("an empty fragment %q: %v", empty, err)
		}
	}
}

// TestBadSizesAndDurationsSayWhy: a size past the largest, a negative size
// and a list are refused each with its own reason, and a negative
// duration is refused naming its key (the roles took it as their default,
// while --print-config printed it).
func TestBadSizesAndDurationsSayWhy(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"version: 1\ndata: /d\nstorage: {max_bytes: 9223372036854775807}\n", "is more than 4 EiB"},
		{"version: 1\ndata: /d\nstorage: {max_bytes: 8388608TiB}\n", `"8388608TiB" is more than 4 EiB`},
		{"version: 1\ndata: /d\nstorage: {max_bytes: -1MiB}\n", `"-1MiB" is negative`},
		{"version: 1\ndata: /d\nstorage: {max_bytes: [1]}\n", "storage.max_bytes: line 3: a size is one value"},
		{"version: 1\ndata: /d\nstorage: {upload_idle_timeout: -1s}\n", "storage.upload_idle_timeout: line 3: -1s is negative"},
	} {
		cfg := DefaultUp("/d")
		if err := ParseFile([]byte(tc.yaml), &cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.yaml, err, tc.want)
		}
	}
	cfg := DefaultUp("/d")
	if err := ParseFile([]byte("version: 1\ndata: /d\nstorage: {upload_idle_timeout: 0s, max_bytes: 4EiB}\n"), &cfg); err == nil {
		t.Error("4EiB: no unit EiB, want an error")
	}
	if err := ParseFile([]byte("version: 1\ndata: /d\nstorage: {upload_idle_timeout: 90s, max_bytes: 4194304TiB}\n"), &cfg); err != nil || cfg.Storage.UploadIdleTimeout != 90*time.Second {
		t.Errorf("the largest size and a positive duration: %v, %v", err, cfg.Storage.UploadIdleTimeout)
	}
}
