package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestEverySubcommandHelp: -h on each subcommand prints its own usage line
// and exits 0, and the --config flag's help names its argument FILE.
func TestEverySubcommandHelp(t *testing.T) {
	for _, sub := range []string{"up", "storage", "scheduler", "worker", "runner", "images", "bench", "install", "run"} {
		out, err := exec.Command(binary, sub, "-h").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "usage:") || !strings.Contains(string(out), "paddock "+sub+" ") {
			t.Errorf("paddock %s -h: %v\n%s\nwant its usage and exit 0", sub, err, out)
		}
		if strings.Contains(string(out), "-config version") {
			t.Errorf("paddock %s -h names --config's argument after the text in back quotes:\n%s", sub, out)
		}
	}
}
