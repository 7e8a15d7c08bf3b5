package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DefaultIDRange is the number of container uids and gids DefaultSpec maps.
const DefaultIDRange = 65536

// MaxPtys bounds the pseudo-terminals one sandbox can hold (its devpts
// instance's max=). The ptys of every devpts instance but the host's come
// out of one machine-wide budget (kernel.pty.max less kernel.pty.reserve,
// 3,072 by default): unbounded, one action opened them all and every
// other sandbox's open of /dev/ptmx failed with ENOSPC for as long as it
// ran. Builds and tests use a handful.
const MaxPtys = 64

// MaskedPaths are the paths DefaultSpec masks in every sandbox: kernel
// interfaces that tell about the host or its hardware. Those under /sys
// are in the rootfs's own tree (no sysfs is mounted), so an image's must
// be directories, or absent, for the mask to go on them.
var MaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// DefaultSpec returns a runtime-spec for running args in a sandbox whose
// rootfs is the host directory rootfs (absolute; "/" for the host's own
// root). Container uid/gid 0..DefaultIDRange-1 map to host ids starting at
// hostIDBase, which must not be 0. The spec has every namespace (network off),
// a read-only rootfs, a fresh /proc, a minimal /dev with pts and shm, a tmpfs
// /tmp, the masked and read-only paths runc uses, a default capability set and
// no_new_privs, and oom_score_adj 1000 (sandboxOOMScoreAdj, which the
// native launcher applies in any case). Both the native launcher and runc
// accept it. Callers adjust the result (env, cwd, bind mounts, resources)
// before writing the bundle.
// With the host's root, /run is covered by an empty tmpfs too.
func DefaultSpec(rootfs string, hostIDBase uint32, args ...string) *specs.Spec {
	caps := []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
	}
	oomScoreAdj := sandboxOOMScoreAdj
	spec := &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding:  caps,
				Effective: caps,
				Permitted: caps,
			},
			Rlimits: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024},
				// No core dumps: one is as large as the process's memory
				// and the kernel writes it past RLIMIT_FSIZE's reach
				// into the working directory, or hands it to the host's
				// core_pattern helper, which runs as root outside the
				// sandbox. The hard limit stays 0, so no process raises it.
				{Type: "RLIMIT_CORE", Hard: 0, Soft: 0},
			},
			NoNewPrivileges: true,
			OOMScoreAdj:     &oomScoreAdj,
		},
		Root:     &specs.Root{Path: rootfs, Readonly: true},
		Hostname: "localhost",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "max=" + strconv.Itoa(MaxPtys)}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777"}},
		},
		Linux: &specs.Linux{
			UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: hostIDBase, Size: DefaultIDRange}},
			GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: hostIDBase, Size: DefaultIDRange}},
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace}, {Type: specs.IPCNamespace},
				{Type: specs.UTSNamespace}, {Type: specs.MountNamespace}, {Type: specs.UserNamespace},
				{Type: specs.CgroupNamespace},
			},
			Resources:   &specs.LinuxResources{},
			MaskedPaths: append([]string(nil), MaskedPaths...),
			ReadonlyPaths: []string{
				"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
			},
		},
	}
	if path.Clean(rootfs) == "/" {
		// The host's /run holds world-writable sockets (journald, D-Bus)
		// that a read-only mount does not protect.
		spec.Mounts = append(spec.Mounts, specs.Mount{Destination: "/run", Type: "tmpfs", Source: "tmpfs",
			Options: []string{"nosuid", "nodev", "mode=755"}})
	}
	return spec
}

// HostID returns the host id that container id maps to under mappings
// (a spec's linux.uidMappings or linux.gidMappings). The runner uses it to
// chown the input root's directories to the sandbox's root, for example.
func HostID(mappings []specs.LinuxIDMapping, containerID uint32) (uint32, error) {
	for _, m := range mappings {
		if containerID >= m.ContainerID && uint64(containerID) < uint64(m.ContainerID)+uint64(m.Size) {
			return m.HostID + (containerID - m.ContainerID), nil
		}
	}
	return 0, fmt.Errorf("container id %d is not mapped", containerID)
}

// bundle is a loaded and validated OCI bundle.
type bundle struct {
	dir    string // absolute bundle directory
	spec   *specs.Spec
	rootfs string // absolute, cleaned host path of the rootfs
}

// loadBundle reads dir/config.json and validates it for the native launcher.
func loadBundle(dir string) (*bundle, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read bundle config: %w", err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("parse %s/config.json: %w", dir, err)
	}
	return bundleOf(dir, &spec)
}

// bundleOf validates spec as the bundle in dir (which relative paths in the
// spec are relative to) for the native launcher.
func bundleOf(dir string, spec *specs.Spec) (*bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	if err := validateSpec(spec); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	rootfs := spec.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(abs, rootfs)
	}
	return &bundle{dir: abs, spec: spec, rootfs: filepath.Clean(rootfs)}, nil
}

// validateSpec refuses specs the native launcher cannot run safely. It is
// pure: it looks at the spec only, never at the disk.
func validateSpec(s *specs.Spec) error {
	if s.Process == nil || len(s.Process.Args) == 0 {
		return errors.New("spec has no process args")
	}
	if s.Root == nil || s.Root.Path == "" {
		return errors.New("spec has no root path")
	}
	if s.Linux == nil {
		return errors.New("spec has no linux section")
	}
	if s.Process.Terminal {
		return errors.New("process.terminal is not supported")
	}
	if s.Hooks != nil {
		return errors.New("hooks are not supported")
	}
	if !path.IsAbs(s.Process.Cwd) {
		return fmt.Errorf("process cwd %q is not absolute", s.Process.Cwd)
	}
	if err := validateMappings("uid", s.Linux.UIDMappings); err != nil {
		return err
	}
	if err := validateMappings("gid", s.Linux.GIDMappings); err != nil {
		return err
	}
	if _, err := HostID(s.Linux.UIDMappings, 0); err != nil {
		return fmt.Errorf("uid mappings: container root must be mapped: %w", err)
	}
	if _, err := HostID(s.Linux.GIDMappings, 0); err != nil {
		return fmt.Errorf("gid mappings: container root must be mapped: %w", err)
	}
	if _, err := HostID(s.Linux.UIDMappings, s.Process.User.UID); err != nil {
		return fmt.Errorf("process user: %w", err)
	}
	if _, err := HostID(s.Linux.GIDMappings, s.Process.User.GID); err != nil {
		return fmt.Errorf("process group: %w", err)
	}
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range s.Linux.Namespaces {
		if ns.Path != "" {
			return fmt.Errorf("namespace %s: joining an existing namespace is not supported", ns.Type)
		}
		seen[ns.Type] = true
	}
	for _, t := range []specs.LinuxNamespaceType{specs.UserNamespace, specs.MountNamespace, specs.PIDNamespace} {
		if !seen[t] {
			return fmt.Errorf("namespace %s is required", t)
		}
	}
	for _, m := range s.Mounts {
		if err := validateDestination(m.Destination); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
	}
	for _, p := range append(append([]string{}, s.Linux.MaskedPaths...), s.Linux.ReadonlyPaths...) {
		if err := validateDestination(p); err != nil {
			return fmt.Errorf("path %s: %w", p, err)
		}
	}
	if _, err := capabilityMask(s.Process.Capabilities); err != nil {
		return err
	}
	for _, r := range s.Process.Rlimits {
		if _, ok := rlimitNames[r.Type]; !ok {
			return fmt.Errorf("unknown rlimit %q", r.Type)
		}
	}
	return nil
}

// validateMappings refuses id mappings that would give the sandbox host id 0.
func validateMappings(kind string, ms []specs.LinuxIDMapping) error {
	if len(ms) == 0 {
		return fmt.Errorf("%s mappings are required", kind)
	}
	for _, m := range ms {
		if m.Size == 0 {
			return fmt.Errorf("%s mapping %+v has size 0", kind, m)
		}
		if m.HostID == 0 {
			return fmt.Errorf("%s mapping %+v includes host id 0", kind, m)
		}
		if uint64(m.HostID)+uint64(m.Size) > 1<<32-1 || uint64(m.ContainerID)+uint64(m.Size) > 1<<32-1 {
			return fmt.Errorf("%s mapping %+v overflows", kind, m)
		}
	}
	return nil
}

// validateDestination accepts absolute, clean paths without "..".
func validateDestination(p string) error {
	if !path.IsAbs(p) {
		return errors.New("not absolute")
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return errors.New("contains a '..' component")
		}
	}
	return nil
}
