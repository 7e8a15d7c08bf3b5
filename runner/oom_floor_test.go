package runner

import (
	"bytes"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestWarnsWithoutOOMFloor: the runner warns at start exactly when its
// process lacks CAP_SYS_RESOURCE, as /proc/self/status says, without
// which an action can lower its oom_score_adj below 1000.
func TestWarnsWithoutOOMFloor(t *testing.T) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	var has bool
	for _, line := range strings.Split(string(status), "\n") {
		if hex, ok := strings.CutPrefix(line, "CapEff:\t"); ok {
			v, err := strconv.ParseUint(hex, 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			has = v&(1<<unix.CAP_SYS_RESOURCE) != 0
		}
	}
	var buf bytes.Buffer
	warnWithoutOOMFloor(slog.New(slog.NewTextHandler(&buf, nil)))
	if warned := strings.Contains(buf.String(), "lacks CAP_SYS_RESOURCE"); warned == has {
		t.Errorf("CAP_SYS_RESOURCE %v, warned %v: %q", has, warned, buf.String())
	}
}
