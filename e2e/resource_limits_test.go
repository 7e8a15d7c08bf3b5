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
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// TestResourceLimitsReported: through `paddock up`, an action past one of
// the runner's limits is contained and reported with the status, exit
// code, message and auxiliary metadata flags a client can act on; none of
// them is cached, and the farm then runs the next action normally.
func TestResourceLimitsReported(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "runner.yaml")
	// /tmp larger than the memory limit, so that filling it ends the
	// whole sandbox by the OOM killer.
	yaml := "version: 1\ndefault_memory_limit: 64MiB\ntmp_size: 1GiB\npids_limit: 64\ndisk_quota: 64MiB\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	f, c := startUpClient(t, "--runner-config", cfg)
	ac := repb.NewActionCacheClient(grpctest.Dial(t, f.addr))
	ctx := t.Context()
	for _, tc := range []struct {
		name, script string
		code         codes.Code
		exit         int32
		message      string
		flag         string // auxiliary metadata flag set, "" for none
	}{
		{"memory hog", "exec /bin/dd if=/dev/zero of=/dev/null bs=512M count=1", codes.OK, 137, "out of memory", "oom_killed"},
		{"partial OOM, exit 0", "/bin/dd if=/dev/zero of=/dev/null bs=512M count=1; exit 0", codes.OK, 0, "out of memory", "oom_killed"},
		{"whole-sandbox OOM", "/bin/cat /dev/zero > /tmp/fill; exit 0", codes.OK, 137, "out of memory", "oom_killed"},
		// The inner shell gives up at the first fork refused; the outer
		// one exits 0.
		{"pids limit, exit 0", "/bin/sh -c 'while :; do sleep 600 & done' 2>/dev/null; exit 0", codes.OK, 0, "limit on processes", "pids_limit_hit"},
		{"disk quota", "i=0; while [ $i -lt 1024 ]; do /bin/dd if=/dev/zero of=f$i bs=1M count=1 status=none || exit 1; i=$((i+1)); done", codes.ResourceExhausted, 0, "disk quota of 64 MiB", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := c.withT(t)
			d := c.prepare(ctx, action{cmd: shell(tc.script)})
			resp, err := c.execute(ctx, d, true)
			if err != nil {
				t.Fatal(err)
			}
			st := status.FromProto(resp.Status)
			msg := resp.Message + " " + st.Message()
			if st.Code() != tc.code || resp.GetResult().GetExitCode() != tc.exit || !strings.Contains(msg, tc.message) {
				t.Errorf("status %v, exit %d, message %q; want %v, exit %d, a message saying %q",
					st.Code(), resp.GetResult().GetExitCode(), msg, tc.code, tc.exit, tc.message)
			}
			if tc.flag != "" && !auxFlag(resp, tc.flag) {
				t.Errorf("auxiliary metadata %v without %s set", resp.GetResult().GetExecutionMetadata().GetAuxiliaryMetadata(), tc.flag)
			}
			if r, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
				t.Errorf("the action cache has %v (%v), want NOT_FOUND", r, err)
			}
			res, stdout, _ := c.run(ctx, action{cmd: shell("echo next")})
			if res.ExitCode != 0 || stdout != "next\n" {
				t.Errorf("next action: exit %d, stdout %q", res.ExitCode, stdout)
			}
		})
	}
	t.Run("fork bomb with a short timeout", func(t *testing.T) {
		c := c.withT(t)
		// Its own memory limit, well above what 64 shells take: under the
		// farm's 64 MiB a loaded machine's bomb was once OOM-killed before
		// its deadline (that case is "whole-sandbox OOM"'s); this one is
		// about the pids limit and the timeout.
		mem := []*repb.Platform_Property{{Name: "EstimatedMemory", Value: "512MiB"}}
		// The command's own shell forks once, before the bomb exists, and
		// then execs sleep: had it forked again (it did, for each side of
		// the bomb's first pipe), a loaded machine's bomb could fill the
		// pids limit first, and the refused fork ended the command early.
		d := c.prepare(ctx, action{cmd: shell("(b() { b | b & }; b) & exec /bin/sleep 600"), timeout: 2 * time.Second, platform: mem})
		resp, err := c.execute(ctx, d, true)
		if err != nil {
			t.Fatal(err)
		}
		if st := status.FromProto(resp.Status); st.Code() != codes.DeadlineExceeded {
			t.Errorf("status %v, want DEADLINE_EXCEEDED", st)
		}
		if r, err := ac.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d}); status.Code(err) != codes.NotFound {
			t.Errorf("the action cache has %v (%v), want NOT_FOUND", r, err)
		}
		if _, stdout, _ := c.run(ctx, action{cmd: shell("echo next")}); stdout != "next\n" {
			t.Errorf("next action's stdout %q", stdout)
		}
	})
	t.Run("/dev/shm fill", func(t *testing.T) {
		c := c.withT(t)
		shm := []*repb.Platform_Property{{Name: "dockerShmSize", Value: "8MiB"}}
		_, stdout, _ := c.run(ctx, action{cmd: shell("/bin/cat /dev/zero > /dev/shm/fill 2>/dev/null; echo rc=$?; /usr/bin/du -k /dev/shm/fill"), platform: shm})
		if !strings.HasPrefix(stdout, "rc=1\n") || !strings.HasPrefix(strings.SplitN(stdout, "\n", 2)[1], "8192\t") {
			t.Errorf("filling an 8 MiB /dev/shm printed %q, want rc=1 (no space left) and 8192 KiB written", stdout)
		}
	})
	f.shutdown()
}

// auxFlag reports whether resp's auxiliary metadata holds a Struct with
// the boolean key set.
func auxFlag(resp *repb.ExecuteResponse, key string) bool {
	for _, a := range resp.GetResult().GetExecutionMetadata().GetAuxiliaryMetadata() {
		var s structpb.Struct
		if a.MessageIs(&s) && a.UnmarshalTo(&s) == nil && s.Fields[key].GetBoolValue() {
			return true
		}
	}
	return false
}
