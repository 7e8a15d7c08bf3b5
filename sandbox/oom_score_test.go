package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// oomScoreScript reports the shell's oom_score_adj and a child's, then
// tries to lower its own (to 0, -1000 and 999), reporting each write that
// succeeds and the value it is left with.
const oomScoreScript = `read v < /proc/self/oom_score_adj; echo "self $v"
/bin/sh -c 'read v < /proc/self/oom_score_adj; echo "child $v"'
for v in 0 -1000 999; do
	if echo $v > /proc/self/oom_score_adj; then echo "lowered to $v"; fi
done
read v < /proc/self/oom_score_adj; echo "after $v"`

// runOOMScoreScript runs oomScoreScript in a sandbox over rootfs and
// returns its lines. Unless fromSpec, its spec does not ask for any
// oom_score_adj (the native launcher sets it all the same).
func runOOMScoreScript(t *testing.T, l *Launcher, rootfs string, fromSpec bool) []string {
	t.Helper()
	sh := "/bin/sh"
	if rootfs == "/" {
		sh = testRootfs + "/bin/sh"
	}
	spec := DefaultSpec(rootfs, testIDBase, sh, "-c", oomScoreScript)
	if !fromSpec {
		spec.Process.OOMScoreAdj = nil
	}
	out := runSpec(t, l, spec, Request{})
	if out.ExitCode != 0 {
		t.Fatalf("exit %d, stdout %q stderr %q", out.ExitCode, out.stdout, out.stderr)
	}
	return strings.Split(strings.TrimSpace(out.stdout), "\n")
}

// oomScoreRootfs are the rootfs the tests run the script over (testRootfs
// is set by TestMain).
func oomScoreRootfs() []struct{ name, rootfs string } {
	return []struct{ name, rootfs string }{{"image rootfs", testRootfs}, {"host root", "/"}}
}

// TestOOMScoreAdj: a sandbox's command and its children have oom_score_adj
// 1000, so that when the host runs out of memory the OOM killer ends an
// action rather than a process of the farm. The spawner, which sets it,
// keeps its own (a write to a process that still shared its memory would
// have changed the spawner's too).
func TestOOMScoreAdj(t *testing.T) {
	l := newTestLauncher(t, Options{})
	for _, tc := range oomScoreRootfs() {
		t.Run(tc.name, func(t *testing.T) {
			lines := runOOMScoreScript(t, l, tc.rootfs, false)
			if len(lines) < 2 || lines[0] != "self 1000" || lines[1] != "child 1000" {
				t.Errorf("got %q, want self 1000 and child 1000 first", lines)
			}
		})
	}
	for name, pid := range map[string]int{"spawner": l.b.(*nativeBackend).spawnerPid(), "test process": os.Getpid()} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
		if err != nil {
			t.Fatal(err)
		}
		if v := strings.TrimSpace(string(b)); v == "1000" {
			t.Errorf("the %s's oom_score_adj is %s: the sandbox's leaked to it", name, v)
		}
	}
}

// TestOOMScoreAdjCannotBeLowered: no write from inside a sandbox lowers its
// oom_score_adj, not even by one. The kernel refuses it because the
// spawner's write, with CAP_SYS_RESOURCE, also set the floor; a spawner
// without that capability (a container's root may lack it) cannot.
func TestOOMScoreAdjCannotBeLowered(t *testing.T) {
	if !hasCapSysResource(t) {
		t.Skip("needs CAP_SYS_RESOURCE, which this root lacks (a container's root may): without it the spawner cannot set the floor")
	}
	l := newTestLauncher(t, Options{})
	for _, tc := range oomScoreRootfs() {
		t.Run(tc.name, func(t *testing.T) {
			lines := runOOMScoreScript(t, l, tc.rootfs, false)
			if want := []string{"self 1000", "child 1000", "after 1000"}; strings.Join(lines, "\n") != strings.Join(want, "\n") {
				t.Errorf("got %q, want %q: the action lowered its oom_score_adj", lines, want)
			}
		})
	}
}

func hasCapSysResource(t *testing.T) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		t.Fatal(err)
	}
	return data[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0
}

// TestOOMScoreAdjRunc: an external runtime gets the same oom_score_adj
// from DefaultSpec's process.oomScoreAdj.
func TestOOMScoreAdjRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed")
	}
	l := newTestLauncher(t, Options{Runtime: runc, RuntimeRoot: t.TempDir()})
	lines := runOOMScoreScript(t, l, testRootfs, true)
	if len(lines) < 2 || lines[0] != "self 1000" || lines[1] != "child 1000" {
		t.Errorf("got %q, want self 1000 and child 1000 first", lines)
	}
}

// TestDefaultSpecOOMScoreAdj: external runtimes get the same oom_score_adj
// from the spec.
func TestDefaultSpecOOMScoreAdj(t *testing.T) {
	s := DefaultSpec("/", testIDBase, "true")
	if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != sandboxOOMScoreAdj {
		t.Errorf("process.oomScoreAdj %v, want %d", s.Process.OOMScoreAdj, sandboxOOMScoreAdj)
	}
}

// BenchmarkSetOOMScoreAdj measures what setOOMScoreAdj adds to each
// sandbox (the spawner's CPU: open, write and close on procfs), on a child
// that has exec'd, as an init has.
//
//	go test ./sandbox -run '^$' -bench SetOOMScoreAdj
func BenchmarkSetOOMScoreAdj(b *testing.B) {
	cmd := exec.Command("sleep", "1000")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := setOOMScoreAdj(cmd.Process.Pid); err != nil {
			b.Fatal(err)
		}
	}
}
