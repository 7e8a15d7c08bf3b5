package runner

import (
	"errors"
	"fmt"
	"math"
	"path"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/images"
	"github.com/paddock-build/paddock/rev2"
)

// Platform property names, from package rev2 (shared with the scheduler).
const (
	propImage          = rev2.PropContainerImage
	propNetwork        = rev2.PropNetwork
	propRunAsRoot      = rev2.PropRunAsRoot
	propUser           = rev2.PropUser
	propPrivileged     = rev2.PropPrivileged
	propShmSize        = rev2.PropShmSize
	propAddCaps        = rev2.PropAddCapabilities
	propDropCaps       = rev2.PropDropCapabilities
	propCPU            = rev2.PropEstimatedCPU
	propMemory         = rev2.PropEstimatedMemory
	propInputRootPath  = rev2.PropInputRootAbsPath
	maxCPUCores        = 4096
	cpuPeriodMicros    = 100000
	minMemoryLimit     = 1 << 20
	minShmSize         = 4096
	capabilityAllValue = "ALL"
)

// platform is an action's execution properties, parsed and validated. The
// zero value is an action without any.
type platform struct {
	Image         string            // container-image value, as given
	ImageRef      *images.Reference // parsed Image; nil = the host's root ("", "none")
	HostNetwork   bool              // dockerNetwork=standard
	RunAsRoot     bool              // dockerRunAsRoot=true
	User          string            // dockerUser, uid[:gid] or user[:group]
	Privileged    bool              // dockerPrivileged=true (already allowed by config)
	ShmSize       int64             // dockerShmSize in bytes; 0 = the default
	AddCaps       []string          // CAP_ names, or "ALL"
	DropCaps      []string
	CPU           float64 // EstimatedCPU in cores; 0 = config default
	Memory        int64   // EstimatedMemory in bytes; 0 = config default
	InputRootPath string  // InputRootAbsolutePath; "" = config default
}

// invalid returns an INVALID_ARGUMENT status error naming the property.
func invalid(name, format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, "platform property %s: %s", name, fmt.Sprintf(format, args...))
}

// parsePlatform validates props against cfg. It is pure.
func parsePlatform(cfg *Config, props []*runnerpb.Property) (platform, error) {
	var p platform
	accepted := map[string]bool{}
	for _, n := range cfg.AcceptedProperties {
		accepted[n] = true
	}
	seen := map[string]bool{}
	for _, prop := range props {
		name, value := prop.GetName(), prop.GetValue()
		if rev2.IsBuiltinRouting(name) || accepted[name] {
			continue
		}
		if seen[name] {
			return p, invalid(name, "given more than once")
		}
		seen[name] = true
		if err := p.set(cfg, name, value); err != nil {
			return platform{}, err
		}
	}
	if err := checkCombination(cfg, p); err != nil {
		return platform{}, err
	}
	return p, nil
}

// set records one execution property of a platform, checked against cfg.
func (p *platform) set(cfg *Config, name, value string) error {
	var err error
	switch name {
	case propImage:
		p.Image = value
		ref, none, perr := images.ParseReference(value)
		if perr != nil {
			err = invalid(name, "%v", perr)
		} else if !none {
			p.ImageRef = &ref
		}
	case propNetwork:
		switch value {
		case "off":
		case "standard":
			p.HostNetwork = true
			if !cfg.AllowHostNetwork {
				err = invalid(name, "the host's network (standard) is not allowed on this runner (allow_host_network is off)")
			}
		default:
			err = invalid(name, "%q: want off or standard", value)
		}
	case propRunAsRoot:
		p.RunAsRoot, err = parseBool(name, value)
	case propUser:
		if _, _, perr := parseUserSpec(value); perr != nil {
			err = invalid(name, "%v", perr)
		}
		p.User = value
	case propPrivileged:
		p.Privileged, err = parseBool(name, value)
		if err == nil && p.Privileged && !cfg.AllowPrivileged {
			err = invalid(name, "privileged sandboxes are not allowed on this runner (allow_privileged is off)")
		}
	case propShmSize:
		p.ShmSize, err = parseSize(name, value)
		if err == nil && p.ShmSize < minShmSize {
			err = invalid(name, "%q: want at least %d bytes", value, minShmSize)
		}
	case propAddCaps:
		p.AddCaps, err = parseCapabilities(name, value)
	case propDropCaps:
		p.DropCaps, err = parseCapabilities(name, value)
	case propCPU:
		c, perr := strconv.ParseFloat(value, 64)
		if perr != nil || math.IsNaN(c) || c <= 0 || c > maxCPUCores {
			err = invalid(name, "%q: want a number of cores in (0, %d]", value, maxCPUCores)
		}
		p.CPU = c
	case propMemory:
		p.Memory, err = parseSize(name, value)
		if err == nil && p.Memory < minMemoryLimit {
			err = invalid(name, "%q: want at least 1MiB", value)
		}
	case propInputRootPath:
		if perr := checkInputRootPath(value); perr != nil {
			err = invalid(name, "%v", perr)
		}
		p.InputRootPath = value
	default:
		err = status.Errorf(codes.InvalidArgument, "platform property %s is not supported by this runner", name)
	}
	return err
}

// checkCombination refuses properties valid alone but not together, or
// beyond the config's limits.
func checkCombination(cfg *Config, p platform) error {
	if p.RunAsRoot && p.User != "" {
		return invalid(propUser, "conflicts with %s=true", propRunAsRoot)
	}
	return checkLimits(cfg, p)
}

// sandboxLimits are the memory figures of one action's sandbox, in bytes.
type sandboxLimits struct {
	Memory int64 // the memory cgroup's limit (0: none)
	Tmp    int64 // size of the /tmp tmpfs (0: the kernel's default)
	Shm    int64 // size of /dev/shm (0: sandbox.DefaultSpec's)
}

// limitsOf resolves an action's limits from its platform and the config
// (whose host-dependent defaults New has resolved). Pure.
func limitsOf(cfg *Config, p platform) sandboxLimits {
	l := sandboxLimits{Memory: p.Memory, Tmp: int64(cfg.TmpSize), Shm: p.ShmSize}
	if l.Memory == 0 {
		l.Memory = int64(cfg.DefaultMemoryLimit)
	}
	if l.Tmp == 0 {
		// Half, as the kernel's own tmpfs default is half of the RAM: a
		// full /tmp then fails writes with ENOSPC and leaves the action's
		// processes memory to run (and to report) in.
		l.Tmp = l.Memory / 2
	}
	return l
}

// checkLimits refuses an EstimatedMemory above max_memory_limit and a
// dockerShmSize above max_shm_size (by default, above the action's memory
// limit).
func checkLimits(cfg *Config, p platform) error {
	if m := int64(cfg.MaxMemoryLimit); m > 0 && p.Memory > m {
		return invalid(propMemory, "%s is above this runner's max_memory_limit (%s)", formatBytes(p.Memory), formatBytes(m))
	}
	if p.ShmSize == 0 {
		return nil
	}
	if m := int64(cfg.MaxShmSize); m > 0 && p.ShmSize > m {
		return invalid(propShmSize, "%s is above this runner's max_shm_size (%s)", formatBytes(p.ShmSize), formatBytes(m))
	}
	if mem := limitsOf(cfg, p).Memory; cfg.MaxShmSize == 0 && mem > 0 && p.ShmSize > mem {
		return invalid(propShmSize, "%s is above the action's memory limit (%s), which /dev/shm counts against", formatBytes(p.ShmSize), formatBytes(mem))
	}
	return nil
}

// formatBytes writes n in the largest binary unit that divides it, or in
// MiB with a fraction.
func formatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if n >= u.size && n%u.size == 0 {
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		}
	}
	if n >= 1<<20 {
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d bytes", n)
}

func parseBool(name, value string) (bool, error) {
	switch value {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, invalid(name, "%q: want true or false", value)
}

// sizeUnits are the suffixes parseSize accepts, all binary (as docker's
// --shm-size and --memory). Longest first.
var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"t", 1 << 40},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"b", 1}, {"B", 1},
}

// parseSize reads "268435456", "256m", "256MB", "256MiB" (binary units).
func parseSize(name, value string) (int64, error) {
	num, mult := value, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(value, u.suffix) {
			num, mult = strings.TrimSuffix(value, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, invalid(name, "%q: want a positive size in bytes, optionally with a unit (k, m, g, KiB, MiB, GiB, ...)", value)
	}
	return n * mult, nil
}

// parseCapabilities reads a comma-separated capability list: names with or
// without CAP_, any case, or ALL.
func parseCapabilities(name, value string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(value, ",") {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c == "" {
			continue
		}
		if c != capabilityAllValue && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if c != capabilityAllValue && !knownCapabilities[c] {
			return nil, invalid(name, "unknown capability %q", c)
		}
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// knownCapabilities are the Linux capability names. Constant.
var knownCapabilities = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range allCapabilities {
		m[c] = true
	}
	return m
}()

// allCapabilities is every Linux capability up to CAP_CHECKPOINT_RESTORE,
// sorted. Constant.
var allCapabilities = []string{
	"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
	"CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
	"CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
	"CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE",
	"CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
	"CAP_SETUID", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
	"CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE",
	"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM",
}

// checkInputRootPath accepts a clean absolute path that is not "/" and not
// under the kernel filesystems the sandbox mounts itself.
func checkInputRootPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%q: want a clean absolute path", p)
	}
	if p == "/" {
		return errors.New(`"/": the input root cannot replace the root`)
	}
	for _, k := range []string{"/proc", "/dev", "/sys"} {
		if p == k || strings.HasPrefix(p, k+"/") {
			return fmt.Errorf("%q: must not be under %s", p, k)
		}
	}
	return nil
}
