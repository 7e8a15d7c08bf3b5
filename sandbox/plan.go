package sandbox

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// defaultDevices are bind-mounted from the host into a /dev tmpfs.
// Constant table.
var defaultDevices = []string{"null", "zero", "full", "random", "urandom", "tty"}

// defaultDevSymlinks are created in a /dev tmpfs (target, name). Constant
// table.
var defaultDevSymlinks = [][2]string{
	{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
	{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"},
}

// hostFacts are what a plan needs to know of the host: read once by the
// spawner, so that planning stays a pure function.
type hostFacts struct {
	lastCap uint32 // highest capability number the kernel knows
	seccomp []byte // the default filter, in the kernel's layout
}

// planFor turns a validated bundle into the init's plan: the mount steps in
// the order the init performs them (the spec's mounts; then, for a /dev
// tmpfs, the default device nodes and symlinks; the spec's devices; masked
// paths; read-only paths), and the process with its credentials, limits,
// capabilities and seccomp filter. It is pure: it reads neither the disk
// nor the kernel.
func planFor(b *bundle, network bool, host hostFacts) (*initplan.Plan, error) {
	s := b.spec
	caps, err := capabilityMask(s.Process.Capabilities)
	if err != nil {
		return nil, err
	}
	p := &initplan.Plan{
		Rootfs:       b.rootfs,
		ReadonlyRoot: s.Root.Readonly,
		LoopbackUp:   network,
		CgroupNS:     hasNamespace(s, specs.CgroupNamespace),
		Umask:        0o022,
		Args:         s.Process.Args,
		Env:          s.Process.Env,
		Cwd:          s.Process.Cwd,
		UID:          s.Process.User.UID,
		GID:          s.Process.User.GID,
		Groups:       s.Process.User.AdditionalGids,
		Bounding:     caps.Bounding,
		Inheritable:  caps.Inheritable,
		Ambient:      caps.Ambient,
		LastCap:      host.lastCap,
		Seccomp:      host.seccomp,
	}
	if hasNamespace(s, specs.UTSNamespace) {
		p.Hostname = s.Hostname
	}
	if s.Process.User.Umask != nil {
		p.Umask = *s.Process.User.Umask
	}
	for _, rl := range s.Process.Rlimits {
		res, ok := rlimitNames[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", rl.Type)
		}
		p.Rlimits = append(p.Rlimits, initplan.Rlimit{Resource: uint32(res), Cur: rl.Soft, Max: rl.Hard})
	}
	devTmpfs := false
	for _, m := range s.Mounts {
		flags, attrs, data := mountFlags(m.Options)
		if isBind(m) {
			p.Mounts = append(p.Mounts, initplan.Mount{Kind: initplan.MountBind,
				Source: bindSource(b.dir, m), Dest: m.Destination, Attrs: attrs})
			continue
		}
		switch m.Type {
		case "proc", "tmpfs", "devpts", "mqueue", "sysfs":
		default:
			return nil, fmt.Errorf("mount %s: filesystem type %q is not supported", m.Destination, m.Type)
		}
		p.Mounts = append(p.Mounts, initplan.Mount{Kind: initplan.MountFS, Source: m.Source,
			Dest: m.Destination, FSType: m.Type, Flags: uint64(flags), Data: data})
		if path.Clean(m.Destination) == "/dev" && m.Type == "tmpfs" {
			devTmpfs = true
		}
	}
	if devTmpfs {
		for _, d := range defaultDevices {
			p.Mounts = append(p.Mounts, initplan.Mount{Kind: initplan.MountBind, Source: "/dev/" + d, Dest: "/dev/" + d})
		}
		for _, l := range defaultDevSymlinks {
			p.Mounts = append(p.Mounts, initplan.Mount{Kind: initplan.MountSymlink, Source: l[0], Dest: "/dev/" + l[1]})
		}
	}
	for _, d := range s.Linux.Devices {
		p.Mounts = append(p.Mounts, initplan.Mount{Kind: initplan.MountBind, Source: d.Path, Dest: d.Path})
	}
	for _, m := range s.Linux.MaskedPaths {
		p.Mounts = append(p.Mounts, initplan.Mount{Kind: initplan.MountMask, Dest: m})
	}
	for _, r := range s.Linux.ReadonlyPaths {
		p.Mounts = append(p.Mounts, initplan.Mount{Kind: initplan.MountReadonly, Dest: r})
	}
	return p, nil
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == t {
			return true
		}
	}
	return false
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// bindSource returns the host path of a bind mount; relative sources are
// relative to the bundle, as in runc.
func bindSource(bundleDir string, m specs.Mount) string {
	if filepath.IsAbs(m.Source) {
		return filepath.Clean(m.Source)
	}
	return filepath.Join(bundleDir, m.Source)
}

// mountOptions are the runtime-spec mount options that are not
// filesystem data, each with its mount(2) flag and, if a bind mount takes
// it, its mount attribute: one row an option, so that a bind and a
// filesystem mount given the same option are restricted alike.
var mountOptions = map[string]struct {
	flag uintptr
	attr uint64
}{
	"ro":          {unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
	"nosuid":      {unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	"nodev":       {unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
	"noexec":      {unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	"sync":        {flag: unix.MS_SYNCHRONOUS},
	"dirsync":     {flag: unix.MS_DIRSYNC},
	"noatime":     {flag: unix.MS_NOATIME},
	"nodiratime":  {flag: unix.MS_NODIRATIME},
	"relatime":    {flag: unix.MS_RELATIME},
	"strictatime": {flag: unix.MS_STRICTATIME},
	// Set neither: "rw" is the default, isBind reads "bind" and "rbind",
	// and propagation options are not applied.
	"rw": {}, "bind": {}, "rbind": {},
	"private": {}, "rprivate": {}, "slave": {}, "rslave": {}, "shared": {}, "rshared": {},
}

// mountFlags splits runtime-spec mount options into mount(2) flags, mount
// attributes (for binds) and filesystem data.
func mountFlags(opts []string) (flags uintptr, attrs uint64, data string) {
	var rest []string
	for _, o := range opts {
		m, ok := mountOptions[o]
		if !ok {
			rest = append(rest, o)
			continue
		}
		flags |= m.flag
		attrs |= m.attr
	}
	return flags, attrs, strings.Join(rest, ",")
}
