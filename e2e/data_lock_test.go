package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecondUpOnTheSameDataIsRefused: a second `paddock up` on the data
// directory of a running farm exits at once with an error naming the
// directory, before it opens anything there: it left the farm's scheduler
// socket in place (it used to replace it, so the live worker could not
// reconnect, after replaying the live farm's journal). Nor may a storage
// or scheduler role be started on up's directories. The first farm goes
// on running actions.
func TestSecondUpOnTheSameDataIsRefused(t *testing.T) {
	f := startUp(t, "")
	c := newClient(t, f.addr)
	checkFarmWorks(t, c, "before")
	sock := filepath.Join(f.data, "scheduler.sock")
	before, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, paddockBin, "up", "--data", f.data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "data directory "+f.data+" is in use by another paddock process (pid ") {
		t.Fatalf("second paddock up on the same data: %v\n%s\nwant a refusal naming the data directory", err, out)
	}
	if strings.Contains(string(out), "recovered from journal") {
		t.Errorf("the second farm replayed the live farm's journal:\n%s", out)
	}
	// Nor may a role be started on up's storage or journal directory.
	for _, c := range []struct {
		args []string
		what string
	}{
		{[]string{"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(f.data, "storage")}, "storage directory"},
		{[]string{"scheduler", "--listen", "127.0.0.1:0", "--storage", f.addr, "--journal-dir", filepath.Join(f.data, "scheduler")}, "journal directory"},
	} {
		out, err := exec.CommandContext(ctx, paddockBin, c.args...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), c.what+" "+f.data) || !strings.Contains(string(out), "is in use by another paddock process") {
			t.Fatalf("paddock %s on a directory of a running up: %v\n%s\nwant a refusal naming the %s", c.args[0], err, out, c.what)
		}
	}
	after, err := os.Stat(sock)
	if err != nil || !os.SameFile(before, after) {
		t.Fatalf("the live farm's scheduler socket was replaced or removed: %v", err)
	}
	checkFarmWorks(t, c, "after")
}
