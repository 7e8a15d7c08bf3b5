package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/configs"
)

// runPrintConfig runs `paddock ROLE ARGS --print-config` and returns what
// it printed.
func runPrintConfig(t *testing.T, role string, args ...string) []byte {
	t.Helper()
	out, err := exec.Command(binary, append(append([]string{role}, args...), "--print-config")...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("paddock %s %s --print-config: %v\n%s", role, strings.Join(args, " "), err, stderr)
	}
	return out
}

func writeConfig(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkPrinted loads printed over def, checks it with check, then feeds
// it back to the role as its --config: the role prints it unchanged.
func checkPrinted[T any](t *testing.T, role string, printed []byte, def func() T, check func(T)) {
	t.Helper()
	got := def()
	if err := configs.ParseFile(printed, &got); err != nil {
		t.Fatalf("%s --print-config printed what does not load: %v\n%s", role, err, printed)
	}
	check(got)
	again := runPrintConfig(t, role, "--config", writeConfig(t, "printed.yaml", string(printed)))
	if string(again) != string(printed) {
		t.Errorf("%s: its printed config, loaded back, prints as\n%s\nwant\n%s", role, again, printed)
	}
}

// Each role: the flags override the file, which overrides the defaults;
// --print-config prints the result, which loads back to the same value.
func TestPrintConfigFlagsOverrideFile(t *testing.T) {
	t.Run("storage", func(t *testing.T) {
		f := writeConfig(t, "storage.yaml", "version: 1\nlisten: 1.2.3.4:5\nmax_bytes: 3GiB\n")
		out := runPrintConfig(t, "storage", "--config", f, "--listen", "127.0.0.1:7")
		checkPrinted(t, "storage", out, configs.DefaultStorage, func(c configs.Storage) {
			want := configs.DefaultStorage()
			want.Listen, want.MaxBytes = "127.0.0.1:7", 3<<30
			want.Assets.AllowedHosts = c.Assets.AllowedHosts // [] or nil
			if !reflect.DeepEqual(c, want) {
				t.Errorf("effective storage config %+v, want %+v", c, want)
			}
		})
	})
	t.Run("scheduler", func(t *testing.T) {
		f := writeConfig(t, "scheduler.yaml", "version: 1\nstorage: s:1\nlease_duration: 45s\njournal_dir: /a\n")
		out := runPrintConfig(t, "scheduler", "--config", f, "--journal-dir", "/b", "--storage", "s:2")
		checkPrinted(t, "scheduler", out, configs.DefaultScheduler, func(c configs.Scheduler) {
			if c.Storage != "s:2" || c.JournalDir != "/b" || c.LeaseDuration != 45*time.Second || c.Listen != "localhost:8981" ||
				c.HeartbeatInterval != 10*time.Second {
				t.Errorf("effective scheduler config %+v", c)
			}
		})
	})
	t.Run("worker", func(t *testing.T) {
		f := writeConfig(t, "worker.yaml", "version: 1\nconcurrency: 3\ncache_size: 1GiB\nmax_input_files: 10\nplatform: [{name: Pool, value: a}]\n")
		token := writeConfig(t, "token", "s3cr3t-token")
		out := runPrintConfig(t, "worker", "--config", f, "--concurrency", "5", "--platform", "Pool=b", "--platform", "Pool=c",
			"--max-input-bytes", "1MiB", "--dial-tls", "--dial-token-file", token)
		if strings.Contains(string(out), "s3cr3t") {
			t.Errorf("the printed config holds the token:\n%s", out)
		}
		checkPrinted(t, "worker", out, configs.DefaultWorker, func(c configs.Worker) {
			if c.Concurrency != 5 || c.CacheSize != 1<<30 || c.MaxInputFiles != 10 || c.MaxInputBytes != 1<<20 ||
				!reflect.DeepEqual(c.Platform, []configs.Property{{Name: "Pool", Value: "b"}, {Name: "Pool", Value: "c"}}) ||
				c.MaxOutputFiles != configs.DefaultWorker().MaxOutputFiles {
				t.Errorf("effective worker config %+v", c)
			}
		})
	})
	t.Run("runner", func(t *testing.T) {
		f := writeConfig(t, "runner.yaml", "version: 1\nsocket: /a.sock\nstate_dir: /s\npids_limit: 10\n")
		out := runPrintConfig(t, "runner", "--config", f, "--socket", "/b.sock", "--hide", "/h")
		checkPrinted(t, "runner", out, configs.DefaultRunner, func(c configs.Runner) {
			hidden := c.HostHiddenPaths
			if c.Socket != "/b.sock" || c.StateDir != "/s" || c.PidsLimit != 10 || hidden[len(hidden)-1] != "/h" {
				t.Errorf("effective runner config %+v", c)
			}
		})
	})
	t.Run("up", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "farm")
		f := writeConfig(t, "up.yaml", "version: 1\ndata: "+data+"\nstorage: {max_bytes: 1GiB}\nscheduler: {max_retries: 7}\n"+
			"worker: {concurrency: 3}\nrunner: {pids_limit: 10, allow_host_network: true}\n")
		rf := writeConfig(t, "runner.yaml", "version: 1\npids_limit: 20\n")
		out := runPrintConfig(t, "up", "--config", f, "--cas-size", "2GiB", "--concurrency", "4", "--runner-config", rf)
		checkPrinted(t, "up", out, func() configs.Up { return configs.DefaultUp("/elsewhere") }, func(c configs.Up) {
			if c.Data != data || c.Storage.MaxBytes != 2<<30 || c.Storage.Dir != filepath.Join(data, "storage") ||
				c.Scheduler.MaxRetries != 7 || c.Scheduler.JournalDir != filepath.Join(data, "scheduler") ||
				c.Worker.Concurrency != 4 || c.Runner.Concurrency != 4 || c.Runner.PidsLimit != 20 || !c.Runner.AllowHostNetwork ||
				c.Runner.Socket != filepath.Join(data, "runner.sock") {
				t.Errorf("effective up config %+v", c)
			}
		})
		if _, err := os.Stat(data); err == nil {
			t.Errorf("--print-config created the data directory")
		}
	})
}

// A file without its version, with a key up wires itself, or with a value
// the role would refuse at start, is refused by --print-config too,
// naming it.
func TestConfigRefusedByTheRoles(t *testing.T) {
	for _, tc := range []struct {
		role, file, want string
	}{
		{"storage", "listen: a:1\n", "line 1: no version key"},
		{"storage", "version: 1\nbackend: {disk: {max_bytes: 1GiB}}\n", "backend.disk.dir: must be set"},
		{"worker", "version: 2\n", `line 1: version "2"`},
		{"worker", "version: 1\nconcurrency: -1\n", "concurrency: -1 is negative"},
		{"scheduler", "version: 1\nlease_duration: 0s\n", "lease_duration must be positive"},
		{"runner", "version: 1\nstate_dir: rel\n", "state_dir"},
		{"up", "version: 1\nworker: {scheduler: a:1}\n", "worker.scheduler"},
		{"up", "version: 1\nrunner: {id_base: 0}\n", "id_base"},
		{"up", "version: 1\nworker: {concurrency: -1}\n", "worker: concurrency: -1 is negative"},
		{"worker", "version: 1\nconcurrency: 2147483648\n", "more than 4096"},
	} {
		f := writeConfig(t, tc.role+".yaml", tc.file)
		out, err := exec.Command(binary, tc.role, "--config", f, "--print-config").CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("%s %q: %v\n%s\nwant an error containing %q", tc.role, tc.file, err, out, tc.want)
		}
	}
}

// TestJournalSyncFlagChecked: --journal-sync is held to the values the
// journal takes when the config is printed, as journal_sync in a file is.
// Before, `--journal-sync sometimes --print-config` printed it, and only
// the start refused it.
func TestJournalSyncFlagChecked(t *testing.T) {
	out, err := exec.Command(binary, "scheduler", "--storage", "127.0.0.1:1", "--journal-sync", "sometimes", "--print-config").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `journal_sync: journal sync policy "sometimes": want fsync or write`) {
		t.Fatalf("--journal-sync sometimes --print-config: %v\n%s", err, out)
	}
}

// TestUpEmptyDataIsTheDefault: `data: ""` and `--data ""` mean the
// default data directory, as configs/up.yaml says, not the current
// directory (filepath.Abs of "", which put a farm's CAS wherever it was
// started).
func TestUpEmptyDataIsTheDefault(t *testing.T) {
	empty := writeConfig(t, "up.yaml", "version: 1\ndata: \"\"\n")
	other := writeConfig(t, "up.yaml", "version: 1\ndata: /elsewhere\n")
	for _, args := range [][]string{{"--config", empty}, {"--data", ""}, {"--config", other, "--data="}} {
		got := configs.DefaultUp("")
		if err := configs.ParseFile(runPrintConfig(t, "up", args...), &got); err != nil {
			t.Fatal(err)
		}
		if got.Data != defaultDataDir() || got.Storage.Dir != filepath.Join(defaultDataDir(), "storage") {
			t.Errorf("up %q: data %q, storage.dir %q; want the default %q", args, got.Data, got.Storage.Dir, defaultDataDir())
		}
	}
}
