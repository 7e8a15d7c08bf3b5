package sandbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// TestPlanFor: the plan holds the spec's mounts in order, then the /dev
// nodes and links, devices, masked and read-only paths; the process with
// its user, capabilities as masks, rlimits by number; and refuses what the
// init cannot do.
func TestPlanFor(t *testing.T) {
	spec := DefaultSpec("/rootfs", 100000, "/bin/sh", "-c", "true")
	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/work", Type: "bind", Source: "in", Options: []string{"rbind", "ro", "nosuid"}})
	spec.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse"}}
	spec.Process.User = specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{5}}
	host := hostFacts{lastCap: 40, seccomp: []byte{1, 2, 3, 4, 5, 6, 7, 8}}
	b, err := bundleOf("/bundles/b1", spec)
	if err != nil {
		t.Fatal(err)
	}
	p, err := planFor(b, true, host)
	if err != nil {
		t.Fatal(err)
	}
	var steps []string
	for _, m := range p.Mounts {
		steps = append(steps, stepString(m))
	}
	want := []string{
		"fs proc /proc", "fs tmpfs /dev", "fs devpts /dev/pts", "fs tmpfs /dev/shm", "fs tmpfs /tmp",
		"bind /bundles/b1/in /work",
		"bind /dev/null /dev/null", "bind /dev/zero /dev/zero", "bind /dev/full /dev/full",
		"bind /dev/random /dev/random", "bind /dev/urandom /dev/urandom", "bind /dev/tty /dev/tty",
		"symlink /proc/self/fd /dev/fd", "symlink /proc/self/fd/0 /dev/stdin", "symlink /proc/self/fd/1 /dev/stdout",
		"symlink /proc/self/fd/2 /dev/stderr", "symlink pts/ptmx /dev/ptmx",
		"bind /dev/fuse /dev/fuse",
	}
	for _, m := range spec.Linux.MaskedPaths {
		want = append(want, "mask "+m)
	}
	for _, r := range spec.Linux.ReadonlyPaths {
		want = append(want, "read-only "+r)
	}
	if strings.Join(steps, "\n") != strings.Join(want, "\n") {
		t.Errorf("steps:\n%s\nwant:\n%s", strings.Join(steps, "\n"), strings.Join(want, "\n"))
	}
	bind := p.Mounts[5]
	if bind.Attrs != unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOSUID {
		t.Errorf("bind attrs %#x", bind.Attrs)
	}
	if tmp := p.Mounts[4]; tmp.Data != "mode=1777" || tmp.Flags != unix.MS_NOSUID|unix.MS_NODEV {
		t.Errorf("/tmp flags %#x data %q", tmp.Flags, tmp.Data)
	}
	if p.Rootfs != "/rootfs" || !p.ReadonlyRoot || p.Hostname != "localhost" || !p.LoopbackUp || !p.CgroupNS {
		t.Errorf("root/hostname/network/cgroupns: %+v", p)
	}
	if p.UID != 1000 || p.GID != 1001 || len(p.Groups) != 1 || p.Groups[0] != 5 || p.Umask != 0o022 {
		t.Errorf("user: %d %d %v umask %o", p.UID, p.GID, p.Groups, p.Umask)
	}
	wantCaps, _ := capabilityMask(spec.Process.Capabilities)
	if p.Bounding != wantCaps.Bounding || p.Bounding&(1<<capNames["CAP_SYS_ADMIN"]) != 0 || p.LastCap != 40 {
		t.Errorf("bounding %#x, want %#x (last cap %d)", p.Bounding, wantCaps.Bounding, p.LastCap)
	}
	if len(p.Rlimits) != 2 || p.Rlimits[0].Resource != unix.RLIMIT_NOFILE || p.Rlimits[0].Cur != 1024 ||
		p.Rlimits[1].Resource != unix.RLIMIT_CORE || p.Rlimits[1].Cur != 0 || p.Rlimits[1].Max != 0 {
		t.Errorf("rlimits %+v", p.Rlimits)
	}
	if string(p.Seccomp) != string(host.seccomp) {
		t.Errorf("seccomp program not carried")
	}

	spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/x", Type: "ext4", Source: "/dev/sda"})
	if _, err := planFor(b, false, host); err == nil || !strings.Contains(err.Error(), `"ext4" is not supported`) {
		t.Errorf("ext4 mount: %v", err)
	}
}

func stepString(m initplan.Mount) string {
	switch m.Kind {
	case initplan.MountBind:
		return "bind " + m.Source + " " + m.Dest
	case initplan.MountFS:
		return "fs " + m.FSType + " " + m.Dest
	case initplan.MountMask:
		return "mask " + m.Dest
	case initplan.MountReadonly:
		return "read-only " + m.Dest
	case initplan.MountSymlink:
		return "symlink " + m.Source + " " + m.Dest
	}
	return "?"
}

// TestRunSpecInMemory: a Request with its Spec needs no config.json.
func TestRunSpecInMemory(t *testing.T) {
	l := newTestLauncher(t, Options{})
	dir := writeBundle(t, testSpec("/bin/false"))
	if err := os.Remove(filepath.Join(dir, "config.json")); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "stdout")
	res, err := l.Run(context.Background(), Request{Bundle: dir, Spec: testSpec("/bin/probe", "exit", "7"), Stdout: out})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if res.ExitCode != 7 || strings.TrimSpace(string(got)) != "to stdout" {
		t.Errorf("exit %d stdout %q", res.ExitCode, got)
	}
}
