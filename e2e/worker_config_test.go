package e2e

import (
	"os"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
)

// TestWorkerRoleFromConfig: `paddock worker --config` takes its addresses,
// directory and platform from the file, a flag (--id) overrides the
// file's, and the worker then runs actions like one started by flags.
func TestWorkerRoleFromConfig(t *testing.T) {
	needPaddock(t)
	dir := searchableTempDir(t)
	workDir := filepath.Join(dir, "worker")
	rs := startRoles(t, dir, workDir)
	cfg := filepath.Join(dir, "worker.yaml")
	body := "version: 1\nscheduler: " + rs.schedAddr + "\nstorage: " + rs.storageAddr + "\nrunner: " + rs.sock +
		"\ndir: " + workDir + "\nid: from-file\nconcurrency: 1\nplatform:\n  - {name: OSFamily, value: Linux}\n  - {name: Pool, value: from-file}\n"
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	rs.worker, _ = startProcess(t, "worker", nil, "worker", "--config", cfg, "--id", "from-flag")
	var offered []*workerpb.Property
	waitFor(t, "worker from-flag connected", faultLimit, func() bool {
		resp, err := rs.admin.ListWorkers(t.Context(), &workerpb.ListWorkersRequest{})
		for _, w := range resp.GetWorkers() {
			if err == nil && w.WorkerId == "from-flag" && w.Connected {
				offered = w.Platform
				return true
			}
		}
		return false
	})
	pool := false
	for _, p := range offered {
		pool = pool || (p.Name == "Pool" && p.Value == "from-file")
	}
	if len(offered) != 2 || !pool {
		t.Errorf("the worker offers %v, want the file's OSFamily=Linux and Pool=from-file", offered)
	}
	c := newClient(t, rs.schedAddr)
	a := action{cmd: shell("echo hello"), platform: []*repb.Platform_Property{{Name: "OSFamily", Value: "Linux"}, {Name: "Pool", Value: "from-file"}}}
	if _, stdout, _ := c.run(t.Context(), a); stdout != "hello\n" {
		t.Errorf("stdout %q", stdout)
	}
	rs.stop()
}
