package main

import (
	"context"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A role refuses an argument that is not a flag, naming it: Go's flag
// package stops at the first one, and everything after it (here the
// journal) was silently dropped.
func TestRolesRefuseStrayArguments(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"scheduler", "--storage", "127.0.0.1:1", "--insecure", "yes", "--listen", "127.0.0.1:0", "--journal-dir", dir},
		{"storage", "--dir", dir, "--insecure", "true", "--listen", "127.0.0.1:0"},
	} {
		// Refused at once; before, the role started (and ran until killed).
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), "unexpected argument") || !strings.Contains(string(out), args[3]+"="+args[4]) {
			t.Errorf("%s: %v\n%s\nwant refused, suggesting %s=%s", strings.Join(args, " "), err, out, args[3], args[4])
		}
	}
}

// SIGHUP (the terminal that ran `make run` closed) stops a role as
// cleanly as SIGTERM does.
func TestSIGHUPStopsCleanly(t *testing.T) {
	addr, cmd := start(t, "storage", "--listen", "127.0.0.1:0", "--dir", t.TempDir())
	if addr == "" {
		t.Fatal("no address")
	}
	stopCleanly(t, cmd, "storage", syscall.SIGHUP)
}
