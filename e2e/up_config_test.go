package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestUpConfigSections: `paddock up --config` applies its sections to the
// roles it runs: the runner section reaches the runner child (its default
// environment shows in an action), the scheduler section the scheduler
// (a timeout above its max_action_timeout is refused), and a flag
// overrides the file (--concurrency over worker.concurrency, seen in the
// runner child's config, which follows it).
func TestUpConfigSections(t *testing.T) {
	needPaddock(t)
	cfg := filepath.Join(searchableTempDir(t), "up.yaml")
	body := "version: 1\nscheduler:\n  max_action_timeout: 2m\n  default_action_timeout: 1m\nworker:\n  concurrency: 3\n" +
		"runner:\n  default_environment: {TZ: UTC}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	f, c := startUpClient(t, "--config", cfg, "--concurrency", "2")
	cmd := &repb.Command{Arguments: []string{"/usr/bin/env", "-0"}, EnvironmentVariables: []*repb.Command_EnvironmentVariable{{Name: "FOO", Value: "bar"}}}
	_, stdout, _ := c.run(t.Context(), action{cmd: cmd, doNotCache: true})
	if got := strings.Split(strings.TrimSuffix(stdout, "\x00"), "\x00"); strings.Join(got, " ") != "FOO=bar TZ=UTC" {
		t.Errorf("environment %q, want the runner section's TZ after the Command's FOO", got)
	}
	long := &repb.Command{Arguments: []string{"/bin/true"}}
	_, err := c.execute(t.Context(), c.prepare(t.Context(), action{cmd: long, timeout: 3 * time.Minute, doNotCache: true}), true)
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("a 3m timeout past the scheduler section's 2m max_action_timeout: %v, want INVALID_ARGUMENT", err)
	}
	runnerCfg, err := os.ReadFile(filepath.Join(f.data, "runner.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(runnerCfg), "\nconcurrency: 2\n") {
		t.Errorf("the runner child's config does not follow --concurrency 2 over the file's 3:\n%s", runnerCfg)
	}
	f.shutdown()
}
