package sandbox

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/internal/testdisk"
	"github.com/paddock-build/paddock/sandbox/internal/probe/report"
)

func fileHash(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestEscapesFail: from inside, none of the classic escapes work, and the
// host is unchanged afterwards: the launcher's binary (reached through
// /proc/1/exe or by path), inherited descriptors, /proc/sys and
// sysrq-trigger, TIOCSTI, nested user namespaces, mount, bpf, keyctl, ptrace,
// setns, and AF_VSOCK sockets (the network namespace does not confine
// them: on a VM they reach the hypervisor's services).
func TestEscapesFail(t *testing.T) {
	l := newTestLauncher(t, Options{})
	// A stand-in for the runner's binary, reachable by path from a sandbox
	// that has the host's root as rootfs.
	runnerBin := filepath.Join(filepath.Dir(testRootfs), "runner-binary")
	if err := os.WriteFile(runnerBin, []byte("#!/bin/sh\necho runner\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	selfHash, runnerHash := fileHash(t, self), fileHash(t, runnerBin)
	corePattern, _ := os.ReadFile("/proc/sys/kernel/core_pattern")

	// Each of these must be refused by the seccomp filter itself (EPERM),
	// not merely by some other layer.
	seccompDenied := []string{"tiocsti", "unshare user", "unshare mount", "clone newuser",
		"mount tmpfs", "umount /proc", "bpf map create", "keyctl join session",
		"ptrace attach pid 1", "ptrace attach host pid", "setns own mnt ns", "socket af_vsock"}
	// Machine-wide budgets: ENOSYS from seccomp, or ENOSPC past the
	// sandbox's own devpts bound.
	wantErrno := map[string]syscall.Errno{"io_setup 65536": syscall.ENOSYS, "memfd_secret": syscall.ENOSYS,
		"open 1000 ptys": syscall.ENOSPC, "fallocate keep_size 64MiB": syscall.EOPNOTSUPP, "raise RLIMIT_CORE": syscall.EPERM}

	for _, tc := range []struct{ name, rootfs, probe, bin string }{
		{"host root", "/", probeHostPath, runnerBin},
		{"image rootfs", testRootfs, "/bin/probe", "/bin/busybox"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := DefaultSpec(tc.rootfs, testIDBase, tc.probe, "escape", fmt.Sprint(os.Getpid()), tc.bin)
			out := runSpec(t, l, spec, Request{})
			var attempts []report.Attempt
			decodeJSON(t, out, &attempts)
			if len(attempts) < 20 {
				t.Fatalf("only %d attempts reported", len(attempts))
			}
			for _, a := range attempts {
				if a.Err == "" {
					t.Errorf("escape %q succeeded", a.Name)
					continue
				}
				if want, ok := wantErrno[a.Name]; ok && syscall.Errno(a.Errno) != want {
					t.Errorf("%s: %s (errno %d), want %v", a.Name, a.Err, a.Errno, want)
				}
				if a.Name == "open 1000 ptys" && !strings.HasPrefix(a.Err, fmt.Sprintf("after %d ptys", MaxPtys)) {
					t.Errorf("%s: %s, want %d ptys and no more", a.Name, a.Err, MaxPtys)
				}
				for _, d := range seccompDenied {
					if strings.HasPrefix(a.Name, d) && syscall.Errno(a.Errno) != syscall.EPERM {
						t.Errorf("%s: %s (errno %d), want EPERM from seccomp", a.Name, a.Err, a.Errno)
					}
				}
				t.Logf("%-40s %s", a.Name, a.Err)
			}
		})
	}
	if fileHash(t, self) != selfHash || fileHash(t, runnerBin) != runnerHash {
		t.Error("a launcher binary changed on the host")
	}
	if now, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); !bytes.Equal(now, corePattern) {
		t.Errorf("core_pattern changed: %q -> %q", corePattern, now)
	}
	for _, p := range []string{"/paddock-escape", filepath.Join(testRootfs, "paddock-escape")} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s was created on the host", p)
			os.Remove(p)
		}
	}
}

// TestSymlinkDestinationsRefused: a rootfs whose /proc, /dev or a bind
// mount's destination is a symlink (here pointing at a host directory) is
// refused at set-up; nothing is mounted over the symlink's target.
func TestSymlinkDestinationsRefused(t *testing.T) {
	l := newTestLauncher(t, Options{})
	for _, dest := range []string{"/proc", "/dev", "/work"} {
		t.Run(strings.TrimPrefix(dest, "/"), func(t *testing.T) {
			base := t.TempDir()
			if err := os.Chmod(base, 0o755); err != nil {
				t.Fatal(err)
			}
			target := filepath.Join(base, "host-target")
			if err := os.Mkdir(target, 0o755); err != nil {
				t.Fatal(err)
			}
			rootfs := filepath.Join(base, "rootfs")
			for _, d := range []string{"bin", "proc", "dev", "tmp", "work"} {
				if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// Absolute and ../-laden: either would leave the rootfs if
			// followed naively.
			os.Remove(filepath.Join(rootfs, dest))
			if err := os.Symlink("../../../../../../.."+target, filepath.Join(rootfs, dest)); err != nil {
				t.Fatal(err)
			}
			spec := DefaultSpec(rootfs, testIDBase, "/bin/true")
			input := t.TempDir()
			if err := os.Chmod(input, 0o755); err != nil {
				t.Fatal(err)
			}
			spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/work", Type: "bind", Source: input, Options: []string{"rbind", "rw"}})
			mountsBefore := countMounts(t)
			_, err := tryRunSpec(t, l, spec, Request{})
			if err == nil || !strings.Contains(err.Error(), "symlink") {
				t.Fatalf("Run error = %v, want a refused symlink", err)
			}
			if ents, _ := os.ReadDir(target); len(ents) != 0 {
				t.Errorf("symlink target on the host was written: %v", ents)
			}
			if n := countMounts(t); n != mountsBefore {
				t.Errorf("host mount count %d -> %d", mountsBefore, n)
			}
		})
	}
}

func countMounts(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	// Other packages' tests, running meanwhile, mount small disks, and
	// the multi-host tests network namespaces (ip netns binds each under
	// /run/netns, and /run/netns itself): TestStressNoLeaks once saw 27
	// mounts become 21 in CI as they went.
	n := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		netns := len(f) > 4 && (strings.HasPrefix(f[4], "/run/netns") || strings.HasPrefix(f[4], "/var/run/netns"))
		if !testdisk.IsTestMount(line) && !netns {
			n++
		}
	}
	return n
}

// TestInitIgnoresSignalsFromInside: pid 1 of a sandbox has no signal
// handler, so the kernel drops every signal its own processes send it
// (only SIGKILL and SIGSTOP from outside reach it): a command that signals
// it cannot end the sandbox early or lose its own status. An init with
// handlers (a Go runtime's) exited on SIGTERM, SIGINT, SIGHUP or SIGQUIT
// and left the command's status unknown.
func TestInitIgnoresSignalsFromInside(t *testing.T) {
	l := newTestLauncher(t, Options{})
	sigs := "TERM INT HUP QUIT USR1 USR2 PIPE ALRM SEGV ABRT STOP KILL"
	out := runSpec(t, l, testSpec("/bin/sh", "-c", "for s in "+sigs+"; do kill -s $s 1; done; exit 3"), Request{})
	if out.ExitCode != 3 || out.InitDied || out.Signal != 0 {
		t.Fatalf("exit %d, signal %v, init died %v; want the command's exit 3 reported by the init", out.ExitCode, out.Signal, out.InitDied)
	}
	runsNormally(t, l)
}
