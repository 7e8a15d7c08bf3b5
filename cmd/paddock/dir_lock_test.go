package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/dirlock"
)

// TestSecondRoleOnADirectoryIsRefused: a second storage role on the
// directory of a running one, or a second scheduler on its journal, exits
// at once with an error naming the directory and the holder's pid, and
// the first goes on serving.
func TestSecondRoleOnADirectoryIsRefused(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	storageAddr, first := start(t, "storage", "--listen", "127.0.0.1:0", "--dir", data)
	journal := filepath.Join(dir, "journal")
	start(t, "scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr, "--journal-dir", journal)
	for _, c := range []struct {
		args []string
		what string
	}{
		{[]string{"storage", "--listen", "127.0.0.1:0", "--dir", data}, "storage directory " + data},
		{[]string{"scheduler", "--listen", "127.0.0.1:0", "--storage", storageAddr, "--journal-dir", journal}, "journal directory " + journal},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, binary, c.args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), c.what+" is in use by another paddock process (pid ") {
			t.Fatalf("paddock %s on a directory in use: %v\n%s\nwant a refusal naming %s", c.args[0], err, out, c.what)
		}
	}
	if !strings.Contains(readLockFile(t, data), strconv.Itoa(first.Process.Pid)) {
		t.Fatal("the lock file does not name the first storage's pid")
	}
	if err := first.Process.Signal(syscall.Signal(0)); err != nil {
		t.Fatalf("the first storage role is gone: %v", err)
	}
}

func readLockFile(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, dirlock.FileName))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
