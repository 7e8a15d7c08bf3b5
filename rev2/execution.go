package rev2

import (
	"errors"
	"fmt"
	"math"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/rev2/imageref"
)

// Bounds of the execution properties' values that hold on every runner.
const (
	MaxCPUCores = 4096
	// MinCPUCores is the smallest CPU limit a cgroup takes: a quota of
	// 1 ms per 100 ms period (the kernel refuses less).
	MinCPUCores     = 0.01
	MinMemoryLimit  = 1 << 20
	MinShmSize      = 4096
	CapabilitiesAll = "ALL" // dockerAddCapabilities / dockerDropCapabilities: every capability
	// SandboxIDs is how many user and group ids a sandbox maps (0 to
	// SandboxIDs-1): a dockerUser id must be one of them. The runner's
	// sandbox maps exactly this many.
	SandboxIDs = 1 << 16
)

// Execution is an action's execution properties, parsed: what shapes its
// sandbox. The zero value is an action without any. Set and Check are the
// rules every runner applies; a runner then adds its config's (what it
// allows, its limits). The scheduler applies these at Execute, so that a
// value no runner would take is refused before the action queues.
type Execution struct {
	Image         string              // container-image value, as given
	ImageRef      *imageref.Reference // parsed Image; nil = the host's root ("", "none")
	HostNetwork   bool                // dockerNetwork=standard
	RunAsRoot     bool                // dockerRunAsRoot=true
	User          string              // dockerUser, uid[:gid] or user[:group]
	Privileged    bool                // dockerPrivileged=true
	ShmSize       int64               // dockerShmSize in bytes; 0 = the default
	AddCaps       []string            // CAP_ names, or "ALL"
	DropCaps      []string
	CPU           float64 // EstimatedCPU in cores; 0 = the runner's default
	Memory        int64   // EstimatedMemory in bytes; 0 = the runner's default
	InputRootPath string  // InputRootAbsolutePath; "" = the runner's default
}

// IsExecution reports whether name is a built-in execution property.
func IsExecution(name string) bool {
	switch name {
	case PropContainerImage, PropNetwork, PropRunAsRoot, PropUser, PropPrivileged,
		PropShmSize, PropAddCapabilities, PropDropCapabilities,
		PropEstimatedCPU, PropEstimatedMemory, PropInputRootAbsPath:
		return true
	}
	return false
}

// Set parses one built-in execution property into e. Its error does not
// name the property (the caller's message does) and quotes the value.
func (e *Execution) Set(name, value string) error {
	var err error
	switch name {
	case PropContainerImage:
		e.Image = value
		ref, none, perr := imageref.Parse(value)
		if perr != nil {
			return perr
		}
		if !none {
			e.ImageRef = &ref
		}
	case PropNetwork:
		switch value {
		case "off":
		case "standard":
			e.HostNetwork = true
		default:
			return fmt.Errorf("%s: want off or standard", Quote(value))
		}
	case PropRunAsRoot:
		e.RunAsRoot, err = parseBool(value)
	case PropUser:
		_, _, err = ParseUserSpec(value)
		e.User = value
	case PropPrivileged:
		e.Privileged, err = parseBool(value)
	case PropShmSize:
		e.ShmSize, err = parseSize(value)
		if err == nil && e.ShmSize < MinShmSize {
			err = fmt.Errorf("%s: want at least %d bytes", Quote(value), MinShmSize)
		}
	case PropAddCapabilities:
		e.AddCaps, err = parseCapabilities(value)
	case PropDropCapabilities:
		e.DropCaps, err = parseCapabilities(value)
	case PropEstimatedCPU:
		c, perr := strconv.ParseFloat(value, 64)
		if perr != nil || math.IsNaN(c) || c < MinCPUCores || c > MaxCPUCores {
			return fmt.Errorf("%s: want a number of cores from %g to %d", Quote(value), MinCPUCores, MaxCPUCores)
		}
		e.CPU = c
	case PropEstimatedMemory:
		e.Memory, err = parseSize(value)
		if err == nil && e.Memory < MinMemoryLimit {
			err = fmt.Errorf("%s: want at least 1MiB", Quote(value))
		}
	case PropInputRootAbsPath:
		err = CheckInputRootPath(value)
		e.InputRootPath = value
	default:
		return errors.New("not an execution property")
	}
	return err
}

// Check refuses properties valid alone but not together; it returns the
// property to name in the message.
func (e *Execution) Check() (string, error) {
	if e.RunAsRoot && e.User != "" {
		return PropUser, fmt.Errorf("conflicts with %s=true", PropRunAsRoot)
	}
	return "", nil
}

// CheckExecution checks the built-in execution properties of p, as every
// runner would: each value, each given once, and their combination.
func CheckExecution(p *repb.Platform, field string) error {
	var e Execution
	seen := map[string]bool{}
	for i, pr := range p.GetProperties() {
		if !IsExecution(pr.Name) {
			continue
		}
		f := fmt.Sprintf("%s.properties[%d]", field, i)
		if seen[pr.Name] {
			return Invalid(f, "platform property %s is given more than once", pr.Name)
		}
		seen[pr.Name] = true
		if err := e.Set(pr.Name, pr.Value); err != nil {
			return Invalid(f, "platform property %s: %v", pr.Name, err)
		}
	}
	if name, err := e.Check(); err != nil {
		return Invalid(field, "platform property %s: %v", name, err)
	}
	return nil
}

func parseBool(value string) (bool, error) {
	switch value {
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, fmt.Errorf("%s: want true or false", Quote(value))
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
func parseSize(value string) (int64, error) {
	num, mult := value, int64(1)
	for _, u := range sizeUnits {
		if strings.HasSuffix(value, u.suffix) {
			num, mult = strings.TrimSuffix(value, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%s: want a positive size in bytes, optionally with a unit (k, m, g, KiB, MiB, GiB, ...)", Quote(value))
	}
	return n * mult, nil
}

// parseCapabilities reads a comma-separated capability list: names with or
// without CAP_, any case, or ALL.
func parseCapabilities(value string) ([]string, error) {
	var out []string
	for _, c := range strings.Split(value, ",") {
		c = strings.ToUpper(strings.TrimSpace(c))
		if c == "" {
			continue
		}
		if c != CapabilitiesAll && !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if c != CapabilitiesAll && !knownCapabilities[c] {
			return nil, fmt.Errorf("unknown capability %s", Quote(c))
		}
		out = append(out, c)
	}
	sort.Strings(out)
	return out, nil
}

// knownCapabilities are the Linux capability names. Constant.
var knownCapabilities = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range AllCapabilities() {
		m[c] = true
	}
	return m
}()

// AllCapabilities is every Linux capability up to CAP_CHECKPOINT_RESTORE,
// sorted: what ALL means.
func AllCapabilities() []string {
	return []string{
		"CAP_AUDIT_CONTROL", "CAP_AUDIT_READ", "CAP_AUDIT_WRITE", "CAP_BLOCK_SUSPEND", "CAP_BPF",
		"CAP_CHECKPOINT_RESTORE", "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
		"CAP_FSETID", "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_KILL", "CAP_LEASE", "CAP_LINUX_IMMUTABLE",
		"CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_MKNOD", "CAP_NET_ADMIN", "CAP_NET_BIND_SERVICE",
		"CAP_NET_BROADCAST", "CAP_NET_RAW", "CAP_PERFMON", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP",
		"CAP_SETUID", "CAP_SYSLOG", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_CHROOT", "CAP_SYS_MODULE",
		"CAP_SYS_NICE", "CAP_SYS_PACCT", "CAP_SYS_PTRACE", "CAP_SYS_RAWIO", "CAP_SYS_RESOURCE",
		"CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_WAKE_ALARM",
	}
}

// userNamePattern is what a user or group name may look like.
var userNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,31}$`)

// ParseUserSpec checks the syntax of "uid[:gid]" or "user[:group]" (ids
// and names may be mixed; ids below SandboxIDs) and returns the two parts.
func ParseUserSpec(s string) (user, group string, err error) {
	user, group, hasGroup := strings.Cut(s, ":")
	if hasGroup && group == "" {
		return "", "", fmt.Errorf("%s: empty group", Quote(s))
	}
	for _, part := range []string{user, group} {
		if part == "" {
			continue
		}
		if n, err := strconv.ParseUint(part, 10, 32); err == nil {
			if n >= SandboxIDs {
				return "", "", fmt.Errorf("%s: id %d is outside the sandbox's 0..%d", Quote(s), n, SandboxIDs-1)
			}
			continue
		}
		if !userNamePattern.MatchString(part) {
			return "", "", fmt.Errorf("%s: want uid[:gid] or user[:group]", Quote(s))
		}
	}
	if user == "" {
		return "", "", fmt.Errorf("%s: want uid[:gid] or user[:group]", Quote(s))
	}
	return user, group, nil
}

// Bounds of InputRootAbsolutePath: the runner builds a directory for each
// of its levels, in a skeleton kept per distinct path.
const (
	MaxInputRootPathBytes  = 1024
	MaxInputRootPathLevels = 64
	maxNameBytes           = 255 // NAME_MAX
)

// CheckInputRootPath accepts a clean absolute path that is not "/" and not
// under the kernel filesystems the sandbox mounts itself or /etc/hosts,
// within
// MaxInputRootPathBytes and MaxInputRootPathLevels.
func CheckInputRootPath(p string) error {
	if !path.IsAbs(p) || path.Clean(p) != p {
		return fmt.Errorf("%s: want a clean absolute path", Quote(p))
	}
	if len(p) > MaxInputRootPathBytes || strings.Count(p, "/") > MaxInputRootPathLevels {
		return fmt.Errorf("%s: want at most %d bytes and %d levels", Quote(p), MaxInputRootPathBytes, MaxInputRootPathLevels)
	}
	for _, name := range strings.Split(p[1:], "/") {
		if len(name) > maxNameBytes {
			return fmt.Errorf("%s: a name in it is %d bytes; Linux takes at most %d", Quote(p), len(name), maxNameBytes)
		}
	}
	if p == "/" {
		return errors.New(`"/": the input root cannot replace the root`)
	}
	// /etc/hosts is the runner's in an image sandbox: an input root there
	// made a directory of it in the image's shared tree, and every later
	// action on the image, any tenant's, lost its /etc/hosts (outside
	// probe).
	for _, k := range []string{"/proc", "/dev", "/sys", "/etc/hosts"} {
		if p == k || strings.HasPrefix(p, k+"/") {
			return fmt.Errorf("%s: must not be under %s", Quote(p), k)
		}
	}
	return nil
}
