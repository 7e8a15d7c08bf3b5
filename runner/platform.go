package runner

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
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
	cpuPeriodMicros    = 100000
	minMemoryLimit     = rev2.MinMemoryLimit
	capabilityAllValue = rev2.CapabilitiesAll
)

// platform is an action's execution properties, parsed and validated
// (rev2's rules, then this runner's config). The zero value is an action
// without any.
type platform struct {
	rev2.Execution
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

// set records one execution property of a platform: rev2's rule of its
// value, then what cfg allows.
func (p *platform) set(cfg *Config, name, value string) error {
	if !rev2.IsExecution(name) {
		return status.Errorf(codes.InvalidArgument, "platform property %s is not supported by this runner", name)
	}
	if err := p.Execution.Set(name, value); err != nil {
		return invalid(name, "%v", err)
	}
	switch {
	case name == propNetwork && p.HostNetwork && !cfg.AllowHostNetwork:
		return invalid(name, "the host's network (standard) is not allowed on this runner (allow_host_network is off)")
	case name == propPrivileged && p.Privileged && !cfg.AllowPrivileged:
		return invalid(name, "privileged sandboxes are not allowed on this runner (allow_privileged is off)")
	}
	return nil
}

// checkCombination refuses properties valid alone but not together, or
// beyond the config's limits.
func checkCombination(cfg *Config, p platform) error {
	if name, err := p.Check(); err != nil {
		return invalid(name, "%v", err)
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
