package sandbox

import (
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestValidateSpec(t *testing.T) {
	for _, tc := range []struct {
		name    string
		mutate  func(s *specs.Spec)
		wantErr string
	}{
		{"default spec", func(s *specs.Spec) {}, ""},
		{"uid mapping includes host root", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 65536}}
		}, "host id 0"},
		{"gid mapping includes host root", func(s *specs.Spec) {
			s.Linux.GIDMappings = append(s.Linux.GIDMappings, specs.LinuxIDMapping{ContainerID: 70000, HostID: 0, Size: 1})
		}, "host id 0"},
		{"no uid mappings", func(s *specs.Spec) { s.Linux.UIDMappings = nil }, "uid mappings are required"},
		{"container root unmapped", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 1, HostID: 100000, Size: 10}}
		}, "container root must be mapped"},
		{"process user unmapped", func(s *specs.Spec) { s.Process.User.UID = 70000 }, "process user"},
		{"no user namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}}
		}, "namespace user is required"},
		{"join existing namespace", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"})
		}, "joining"},
		{"relative mount destination", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "work", Type: "bind", Source: "/x"})
		}, "not absolute"},
		{"dot-dot mount destination", func(s *specs.Spec) {
			s.Mounts = append(s.Mounts, specs.Mount{Destination: "/work/../../etc", Type: "bind", Source: "/x"})
		}, "contains a '..' component"},
		{"unknown capability", func(s *specs.Spec) {
			s.Process.Capabilities.Bounding = append(s.Process.Capabilities.Bounding, "CAP_TELEPORT")
		}, "unknown capability"},
		{"unknown rlimit", func(s *specs.Spec) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_WISHES"})
		}, "unknown rlimit"},
		{"no args", func(s *specs.Spec) { s.Process.Args = nil }, "no process args"},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "work" }, "cwd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultSpec("/rootfs", 100000, "/bin/true")
			tc.mutate(s)
			err := validateSpec(s)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestHostID(t *testing.T) {
	maps := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1000}, {ContainerID: 5000, HostID: 200000, Size: 10}}
	for _, tc := range []struct {
		in   uint32
		want uint32
		ok   bool
	}{
		{0, 100000, true}, {999, 100999, true}, {1000, 0, false}, {5009, 200009, true}, {5010, 0, false},
	} {
		got, err := HostID(maps, tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("HostID(%d) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestRunRefusesHostRootMapping: the launcher itself refuses a bundle that
// would map container ids onto host root, before creating anything.
func TestRunRefusesHostRootMapping(t *testing.T) {
	l := newTestLauncher(t, Options{})
	spec := testSpec("/bin/true")
	spec.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 1}}
	_, err := tryRunSpec(t, l, spec, Request{})
	if err == nil || !strings.Contains(err.Error(), "host id 0") {
		t.Fatalf("Run error %v, want refusal of host id 0", err)
	}
}

func TestMountFlags(t *testing.T) {
	flags, attrs, data := mountFlags([]string{"nosuid", "ro", "mode=755", "noexec", "size=1k", "rbind"})
	if flags != unix.MS_NOSUID|unix.MS_RDONLY|unix.MS_NOEXEC {
		t.Errorf("flags %#x", flags)
	}
	if attrs != unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NOEXEC {
		t.Errorf("attrs %#x", attrs)
	}
	if data != "mode=755,size=1k" {
		t.Errorf("data %q", data)
	}
}

// TestSeccompFilterShape checks the assembled program: it starts with the
// architecture check, every jump lands inside the program, and it ends in
// return instructions.
func TestSeccompFilterShape(t *testing.T) {
	f, err := defaultSeccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	if f[0].Code != unix.BPF_LD|unix.BPF_W|unix.BPF_ABS || f[0].K != seccompDataArch || f[1].K != unix.AUDIT_ARCH_X86_64 {
		t.Errorf("program does not start with the arch check: %+v %+v", f[0], f[1])
	}
	for i, ins := range f {
		if ins.Code&0x07 == unix.BPF_JMP {
			if i+1+int(ins.Jt) >= len(f) || i+1+int(ins.Jf) >= len(f) {
				t.Errorf("instruction %d jumps outside the program", i)
			}
		}
	}
	if last := f[len(f)-1]; last.Code != unix.BPF_RET|unix.BPF_K {
		t.Errorf("last instruction %+v is not a return", last)
	}
}
