package sandbox

import (
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/sandbox/internal/probe/report"
)

// TestPosture: inside, the effective capabilities are the spec's,
// no_new_privs is set, seccomp is in filter mode, every namespace differs
// from the host's, container root is an unprivileged host uid, only fds 0-2
// are open, and the environment, cwd and hostname are exactly the spec's.
func TestPosture(t *testing.T) {
	l := newTestLauncher(t, Options{})
	hostNS := map[string]string{}
	for _, ns := range []string{"user", "mnt", "pid", "ipc", "uts", "net", "cgroup"} {
		hostNS[ns], _ = os.Readlink("/proc/self/ns/" + ns)
	}
	for _, tc := range []struct {
		name    string
		rootfs  string
		uid     uint32
		ambient []string
	}{
		{"root in container", testRootfs, 0, nil},
		{"user 1000", testRootfs, 1000, nil},
		{"user 1000 with an ambient capability", testRootfs, 1000, []string{"CAP_NET_BIND_SERVICE"}},
		{"host root as rootfs", "/", 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			probe := "/bin/probe"
			if tc.rootfs == "/" {
				probe = probeHostPath
			}
			spec := DefaultSpec(tc.rootfs, testIDBase, probe, "posture")
			spec.Process.Env = []string{"PATH=/bin", "ONLY=this"}
			spec.Process.Cwd = "/tmp"
			spec.Process.User.UID, spec.Process.User.GID = tc.uid, tc.uid
			spec.Process.Capabilities.Bounding = []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
			spec.Process.Capabilities.Effective = spec.Process.Capabilities.Bounding
			spec.Process.Capabilities.Permitted = spec.Process.Capabilities.Bounding
			spec.Process.Capabilities.Ambient = tc.ambient
			out := runSpec(t, l, spec, Request{})
			var p report.Posture
			decodeJSON(t, out, &p)

			wantEff, wantAmb := "0000000000000000", "0000000000000000"
			if tc.uid == 0 {
				wantEff = fmt.Sprintf("%016x", uint64(1<<0|1<<5|1<<10))
			}
			if tc.ambient != nil {
				wantEff, wantAmb = fmt.Sprintf("%016x", uint64(1<<10)), fmt.Sprintf("%016x", uint64(1<<10))
			}
			if p.Status["CapAmb"] != wantAmb {
				t.Errorf("CapAmb %s, want %s", p.Status["CapAmb"], wantAmb)
			}
			if p.Status["CapEff"] != wantEff || p.Status["CapPrm"] != wantEff {
				t.Errorf("CapEff %s CapPrm %s, want %s", p.Status["CapEff"], p.Status["CapPrm"], wantEff)
			}
			if want := fmt.Sprintf("%016x", uint64(1<<0|1<<5|1<<10)); p.Status["CapBnd"] != want {
				t.Errorf("CapBnd %s, want %s", p.Status["CapBnd"], want)
			}
			if p.Status["NoNewPrivs"] != "1" {
				t.Errorf("NoNewPrivs = %q", p.Status["NoNewPrivs"])
			}
			if p.Status["Seccomp"] != "2" {
				t.Errorf("Seccomp = %q, want 2 (filter)", p.Status["Seccomp"])
			}
			for ns, host := range hostNS {
				if p.Namespaces[ns] == "" || strings.HasPrefix(p.Namespaces[ns], "error") || p.Namespaces[ns] == host {
					t.Errorf("namespace %s inside %q, host %q", ns, p.Namespaces[ns], host)
				}
			}
			if f := strings.Fields(p.UIDMap); len(f) != 3 || f[0] != "0" || f[1] != fmt.Sprint(testIDBase) {
				t.Errorf("uid_map %q, want 0 -> %d", p.UIDMap, testIDBase)
			}
			if f := strings.Fields(p.GIDMap); len(f) != 3 || f[0] != "0" || f[1] != fmt.Sprint(testIDBase) {
				t.Errorf("gid_map %q", p.GIDMap)
			}
			if p.UID != int(tc.uid) || p.GID != int(tc.uid) || len(p.Groups) != 0 {
				t.Errorf("uid %d gid %d groups %v", p.UID, p.GID, p.Groups)
			}
			if !reflect.DeepEqual(p.FDs, []int{0, 1, 2}) {
				t.Errorf("open fds %v, want [0 1 2]", p.FDs)
			}
			if !reflect.DeepEqual(p.Env, spec.Process.Env) {
				t.Errorf("env %q, want %q", p.Env, spec.Process.Env)
			}
			if p.Cwd != "/tmp" || p.Hostname != "localhost" || p.Pid <= 1 {
				t.Errorf("cwd %q hostname %q pid %d", p.Cwd, p.Hostname, p.Pid)
			}
			if tc.rootfs == "/" {
				// The host root is there, read-only, with fresh
				// /proc, /tmp and /run over it.
				fresh := map[string]string{}
				for _, line := range strings.Split(p.Mounts, "\n") {
					f := strings.Fields(line)
					if len(f) > 5 && f[4] == "/" && !strings.HasPrefix(f[5], "ro") {
						t.Errorf("root mount not read-only: %s", line)
					}
					if _, after, ok := strings.Cut(line, " - "); ok && len(f) > 4 {
						fresh[f[4]] = strings.Fields(after)[0]
					}
				}
				for mp, fs := range map[string]string{"/proc": "proc", "/tmp": "tmpfs", "/run": "tmpfs", "/dev": "tmpfs"} {
					if fresh[mp] != fs {
						t.Errorf("%s is %q inside, want a fresh %s", mp, fresh[mp], fs)
					}
				}
			}
		})
	}
}
