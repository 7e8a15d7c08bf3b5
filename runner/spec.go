package runner

import (
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/sandbox"
)

// specInput is everything the runtime-spec of one action depends on. The
// runner gathers it (parsing the platform, resolving the rootfs and the
// user); buildSpec turns it into a spec without touching the disk.
type specInput struct {
	Config   *Config
	Request  *runnerpb.RunRequest
	Platform platform
	// User is who the command runs as inside the sandbox.
	User sandboxUser
	// Rootfs is the host directory used as the sandbox's root: an image's
	// flattened tree, or the host view's skeleton.
	Rootfs string
	// HostBinds are read-only binds of host paths: the host view's, or an
	// image sandbox's /etc/hosts (imageHostsBind).
	HostBinds []specs.Mount
	// ImageEnv is the image's Env, merged only if the config says so.
	ImageEnv []string
	// IDBase is the host uid and gid of container id 0 (the sandbox's slot).
	IDBase uint32
}

// inputRootPath is where the input root appears inside the sandbox.
func inputRootPath(cfg *Config, p platform) string {
	if p.InputRootPath != "" {
		return p.InputRootPath
	}
	return cfg.InputRootPath
}

// buildSpec returns the runtime-spec for one action. It is pure. The
// decisions it encodes:
//
//   - args are the Command's arguments, exactly; an unqualified argv[0] is
//     looked up in the Command's own PATH, inside the sandbox.
//   - the environment is exactly the Command's, in its order; the config
//     may add default_environment variables (none by default), and, with
//     merge_image_environment, the image's, each only where the Command
//     does not set that name. Nothing else (no PATH, HOME or TERM) is added.
//   - the input root is bind-mounted read-write (nosuid, nodev) at the
//     input root path; the working directory is below it.
//   - the rootfs is read-only, with sandbox.DefaultSpec's /proc, /dev,
//     /dev/shm and a fresh tmpfs /tmp, each tmpfs bounded (/tmp by
//     tmp_size, half the action's memory limit by default; /dev/shm by
//     dockerShmSize); network, pid, ipc, uts, mount, user
//     and cgroup namespaces are new, unless dockerNetwork=standard keeps the
//     host's network.
//   - container ids 0..65535 map to host ids from IDBase.
//   - the memory limit is EstimatedMemory or default_memory_limit, with
//     memory+swap equal to it; the pids limit is pids_limit; RLIMIT_FSIZE
//     is disk_quota.
func buildSpec(in specInput) (*specs.Spec, error) {
	req := in.Request
	if len(req.GetArguments()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "command has no arguments")
	}
	for i, a := range req.GetArguments() {
		if strings.ContainsRune(a, 0) {
			return nil, status.Errorf(codes.InvalidArgument, "argument %d contains a NUL byte", i)
		}
	}
	env, err := environment(in)
	if err != nil {
		return nil, err
	}
	wd := req.GetWorkingDirectory()
	if err := checkRelativePath(wd); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "working directory %q: %v", wd, err)
	}
	irp := inputRootPath(in.Config, in.Platform)

	s := sandbox.DefaultSpec(in.Rootfs, in.IDBase, req.GetArguments()...)
	s.Process.Env = env
	s.Process.Cwd = path.Join(irp, wd)
	s.Process.User = specs.User{UID: in.User.UID, GID: in.User.GID}

	lim := limitsOf(in.Config, in.Platform)
	mounts := append([]specs.Mount(nil), in.HostBinds...)
	for _, m := range s.Mounts {
		switch {
		case m.Destination == "/dev/shm" && lim.Shm > 0:
			m.Options = withSize(m.Options, lim.Shm)
		case m.Destination == "/tmp" && m.Type == "tmpfs" && lim.Tmp > 0:
			// Without size= a tmpfs may grow to half the host's RAM;
			// its pages count against the memory limit as well.
			m.Options = withSize(m.Options, lim.Tmp)
		}
		mounts = append(mounts, m)
	}
	mounts = append(mounts, specs.Mount{
		Destination: irp, Type: "bind", Source: req.GetInputRoot(),
		Options: []string{"rbind", "rw", "nosuid", "nodev"},
	})
	s.Mounts = mounts

	if in.Platform.HostNetwork {
		ns := s.Linux.Namespaces[:0]
		for _, n := range s.Linux.Namespaces {
			if n.Type != specs.NetworkNamespace {
				ns = append(ns, n)
			}
		}
		s.Linux.Namespaces = ns
	}

	caps := capabilities(s.Process.Capabilities.Bounding, in.Platform)
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps}
	if in.Platform.Privileged {
		s.Linux.MaskedPaths, s.Linux.ReadonlyPaths = nil, nil
	}

	applyLimits(s, in.Config, in.Platform, lim)
	return s, nil
}

// applyLimits sets the spec's rlimits and cgroup resources (see buildSpec).
func applyLimits(s *specs.Spec, cfg *Config, p platform, lim sandboxLimits) {
	if q := uint64(cfg.DiskQuota); q > 0 {
		// No file may outgrow the disk quota (diskGuard sees the rest).
		s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_FSIZE", Hard: q, Soft: q})
	}
	res := s.Linux.Resources
	if n := cfg.PidsLimit; n > 0 {
		res.Pids = &specs.LinuxPids{Limit: &n}
	}
	if mem := lim.Memory; mem > 0 {
		swap := mem // memory+swap = memory: no swap, so the limit is real
		res.Memory = &specs.LinuxMemory{Limit: &mem, Swap: &swap}
	}
	cpu := p.CPU
	if cpu == 0 {
		cpu = cfg.DefaultCPULimit
	}
	if cpu > 0 {
		quota := int64(cpu * cpuPeriodMicros)
		period := uint64(cpuPeriodMicros)
		res.CPU = &specs.LinuxCPU{Quota: &quota, Period: &period}
	}
}

// environment composes the process environment (see buildSpec).
func environment(in specInput) ([]string, error) {
	set := map[string]bool{}
	var env []string
	for _, v := range in.Request.GetEnvironmentVariables() {
		if err := checkEnvName(v.GetName()); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "environment: %v", err)
		}
		if strings.ContainsRune(v.GetValue(), 0) {
			return nil, status.Errorf(codes.InvalidArgument, "environment variable %s: value contains a NUL byte", v.GetName())
		}
		if set[v.GetName()] {
			return nil, status.Errorf(codes.InvalidArgument, "environment variable %s given twice", v.GetName())
		}
		set[v.GetName()] = true
		env = append(env, v.GetName()+"="+v.GetValue())
	}
	var defaults []string
	for k := range in.Config.DefaultEnvironment {
		defaults = append(defaults, k)
	}
	sort.Strings(defaults)
	for _, k := range defaults {
		if !set[k] {
			set[k] = true
			env = append(env, k+"="+in.Config.DefaultEnvironment[k])
		}
	}
	if in.Config.MergeImageEnvironment {
		for _, kv := range in.ImageEnv {
			k, _, ok := strings.Cut(kv, "=")
			if !ok || checkEnvName(k) != nil || set[k] || strings.ContainsRune(kv, 0) {
				continue
			}
			set[k] = true
			env = append(env, kv)
		}
	}
	return env, nil
}

// checkEnvName accepts what execve can carry as a variable name.
func checkEnvName(name string) error {
	if name == "" || strings.ContainsAny(name, "=\x00") {
		return fmt.Errorf("variable name %q: want non-empty, without '=' or NUL", name)
	}
	return nil
}

// checkRelativePath accepts "" or a clean relative path without "..".
func checkRelativePath(p string) error {
	if p == "" {
		return nil
	}
	if path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return fmt.Errorf("want a clean path relative to the input root")
	}
	return nil
}

// capabilities applies the platform's capability changes to the default
// set: privileged starts from every capability; then ALL dropped empties
// the set and ALL added fills it; then the named drops are removed and the
// named adds added (docker's order: --cap-drop=ALL --cap-add=X is just X).
func capabilities(defaults []string, p platform) []string {
	set := map[string]bool{}
	for _, c := range defaults {
		set[c] = true
	}
	addAll := func() {
		for _, c := range rev2.AllCapabilities() {
			set[c] = true
		}
	}
	if p.Privileged {
		addAll()
	}
	for _, c := range p.DropCaps {
		if c == capabilityAllValue {
			set = map[string]bool{}
		}
	}
	for _, c := range p.AddCaps {
		if c == capabilityAllValue {
			addAll()
		}
	}
	for _, c := range p.DropCaps {
		delete(set, c)
	}
	for _, c := range p.AddCaps {
		if c != capabilityAllValue {
			set[c] = true
		}
	}
	out := make([]string, 0, len(set))
	for c := range set {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// withSize replaces a tmpfs size= option.
func withSize(opts []string, size int64) []string {
	out := make([]string, 0, len(opts)+1)
	for _, o := range opts {
		if !strings.HasPrefix(o, "size=") {
			out = append(out, o)
		}
	}
	return append(out, "size="+strconv.FormatInt(size, 10))
}

// ownMountPoints are the sandbox paths the spec mounts filesystems on
// (not below another of its mounts): DefaultSpec's /proc, /dev and /tmp
// (defaultMountPoints), and the input root path. A read-only rootfs must
// already have them.
func ownMountPoints(irp string) []string {
	return append(defaultMountPoints(), irp)
}

// defaultMountPoints are DefaultSpec's mount points not below another.
func defaultMountPoints() []string {
	var out []string
	for _, m := range sandbox.DefaultSpec("/", 1, "true").Mounts {
		under := false
		for _, o := range out {
			under = under || strings.HasPrefix(m.Destination, o+"/")
		}
		if !under {
			out = append(out, m.Destination)
		}
	}
	return out
}
