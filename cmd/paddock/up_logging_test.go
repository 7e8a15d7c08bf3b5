package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-build/paddock/internal/testfs"
)

// TestUpLogsInItsFormatAndLevel: with --log-format json every line `paddock
// up` writes on stderr is a JSON object, its runner child's included (the
// child's "paddock runner listening on" banner was copied there as plain
// text), and --log-level reaches the child too.
func TestUpLogsInItsFormatAndLevel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("paddock up starts a runner, which needs root")
	}
	stderr := runUpBriefly(t, "--log-format", "json")
	if !strings.Contains(stderr, `"msg":"runner serving"`) {
		t.Errorf("the runner child's log is missing:\n%s", stderr)
	}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("--log-format json: a line that is not JSON: %q", line)
		}
	}
	stderr = runUpBriefly(t, "--log-format", "json", "--log-level", "warn")
	if strings.Contains(stderr, `"level":"INFO"`) {
		t.Errorf("--log-level warn: info lines logged (the runner child's \"runner serving\" among them?):\n%s", stderr)
	}
}

// runUpBriefly starts `paddock up` with args on a data directory of its
// own, stops it (SIGINT) once it prints its banner, and returns its stderr.
func runUpBriefly(t *testing.T, args ...string) string {
	t.Helper()
	dir := testfs.SearchableTempDir(t, "", "paddock-up-logs")
	cmd, _, stderr := startUntilBanner(t, "paddock is up", append([]string{"up", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--http-listen", ""}, args...)...)
	stopCleanly(t, cmd, fmt.Sprintf("paddock up %v", args), syscall.SIGINT)
	return stderr.String()
}

// TestUpLogsItsStop: up logs when it begins stopping, naming the signal,
// and when it has stopped, with how long that took (as the split roles
// do: TestSplitRolesLogTheirStop).
func TestUpLogsItsStop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("paddock up starts a runner, which needs root")
	}
	stderr := runUpBriefly(t)
	i := strings.Index(stderr, `level=INFO msg="paddock stopping" signal=SIGINT`)
	j := strings.Index(stderr, `level=INFO msg="paddock stopped" took=`)
	if i < 0 || j < i {
		t.Errorf("want a paddock stopping line naming SIGINT, then a paddock stopped line with took=:\n%s", stderr)
	}
}
