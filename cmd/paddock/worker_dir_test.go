package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/internal/testfs"
)

// A worker given a relative --dir runs actions: the runner takes only
// absolute paths, and with the directory as given the worker started,
// said it was ready, and every action failed with INVALID_ARGUMENT.
func TestWorkerWithARelativeDirRunsActions(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the runner needs root")
	}
	dir := t.TempDir()
	storage := startRole(t, "storage serving", "storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
	scheduler := startRole(t, "scheduler serving", "scheduler", "--listen", "127.0.0.1:0", "--storage", storage.addr(t),
		"--journal-dir", filepath.Join(dir, "journal"))
	rdir := testfs.SearchableTempDir(t, "", "paddock-relative-dir")
	sock := filepath.Join(rdir, "runner.sock")
	startRole(t, "runner serving", "runner", "--socket", sock, "--state", filepath.Join(rdir, "state"))
	startRoleIn(t, rdir, "worker ready", "worker", "--scheduler", scheduler.addr(t), "--storage", storage.addr(t),
		"--runner", sock, "--dir", "worker")
	run := exec.Command(binary, "run", "--endpoint", scheduler.addr(t), "--no-compiler-deps", "--skip-cache", "--", "/bin/echo", "relative")
	run.Dir = t.TempDir()
	out, err := run.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "relative") {
		t.Fatalf("an action on a worker with --dir worker: %v\n%s", err, out)
	}
}
