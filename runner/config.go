package runner

import (
	"errors"
	"fmt"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/paddock-build/paddock/images"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/sandbox"
)

// Config configures the runner. Its file form is configs.Runner
// (`paddock runner --config`, configs/runner.yaml), which converts to it
// and takes its defaults from DefaultConfig.
type Config struct {
	// Socket is the UNIX socket the runner serves on. It is created with
	// mode 0600: only the worker's user (the runner's) may connect.
	Socket string
	// StateDir holds the runner's bundles (one directory per running
	// action, removed when it ends and at start-up) and, by default, the
	// image cache. It is made mode 0711: sandboxes run as unprivileged
	// host uids that must search through it to reach their rootfs, but
	// may not list it. It is never visible inside a sandbox.
	StateDir string
	// InputRootPath is where the input root is bind-mounted (read-write)
	// inside the sandbox, and so the command's working directory is below
	// it. The platform property InputRootAbsolutePath overrides it per
	// action. Absolute and clean; not "/" and not under /proc, /dev or /sys.
	InputRootPath string
	// DefaultTimeout applies to actions that set no timeout. 0 means none.
	DefaultTimeout time.Duration
	// DefaultUser is the uid[:gid] (or user[:group], looked up in the
	// rootfs's /etc/passwd and /etc/group) commands run as inside the
	// sandbox when the action sets neither dockerUser nor dockerRunAsRoot
	// and its image names no user. Ids are inside the sandbox's user
	// namespace (0..65535); container root is an unprivileged host uid.
	DefaultUser string
	// DefaultEnvironment holds variables added to an action's environment
	// only when its Command does not set them. Empty by default: the
	// environment is exactly the Command's.
	DefaultEnvironment map[string]string
	// MergeImageEnvironment adds an image's Env variables that the Command
	// does not set (docker's behaviour). Off by default: the environment is
	// exactly the Command's whatever the image.
	MergeImageEnvironment bool
	// AllowPrivileged accepts dockerPrivileged=true: every capability (in
	// the sandbox's user namespace, never host root) and no masked or
	// read-only /proc paths. Off: such actions get INVALID_ARGUMENT.
	AllowPrivileged bool
	// AllowHostNetwork accepts dockerNetwork=standard: the sandbox shares
	// the host's network, so it reaches the farm's own ports and anything
	// the host can. Off: such actions get INVALID_ARGUMENT.
	AllowHostNetwork bool
	// AcceptedProperties are extra platform property names this runner
	// accepts and ignores (routing keys of the operator's own). Any other
	// name that is not a known routing or execution key is refused.
	AcceptedProperties []string
	// PidsLimit caps the processes and threads of one sandbox (its pids
	// cgroup); a fork past it fails with EAGAIN and is reported as
	// pids_limit_hit. 0 means no limit.
	PidsLimit int64
	// DefaultMemoryLimit is the memory cgroup limit of actions without
	// EstimatedMemory. It covers everything the action's processes use,
	// including the pages of its /tmp, /run and /dev/shm (tmpfs pages are
	// charged to the cgroup that writes them); nothing swaps. 0 means the
	// host's memory less a reserve (hostMemoryReserve: a tenth of it,
	// between 256 MiB and 4 GiB, at most half of it), divided by
	// Concurrency, in whole MiB, so that the actions the worker runs at
	// once cannot together take the memory the farm's own processes and
	// the page cache need. (Should the host run out of memory all the
	// same, the kernel's OOM killer picks an action first: every
	// sandbox's processes have oom_score_adj 1000.)
	DefaultMemoryLimit int64
	// MaxMemoryLimit is the largest EstimatedMemory an action may ask
	// for; beyond it the action is refused with INVALID_ARGUMENT. 0 means
	// the host's memory.
	MaxMemoryLimit int64
	// Concurrency is how many actions the worker runs at once (its
	// concurrency; `paddock up` passes its own). It only sizes the default
	// of DefaultMemoryLimit. 0 means the number of CPUs, the worker's
	// default.
	Concurrency int
	// TmpSize bounds the tmpfs at /tmp. Its pages count against the
	// action's memory limit too. 0 means half the action's memory limit
	// (as the kernel's default for a tmpfs is half the RAM), so that a
	// full /tmp fails writes with ENOSPC rather than ending the action
	// by the OOM killer.
	TmpSize int64
	// DiskQuota bounds the bytes of disk an action's files may take in its
	// input root (the only place on disk it can write): any single file
	// is stopped there by RLIMIT_FSIZE (the write fails with EFBIG, the
	// process gets SIGXFSZ), and a sandbox whose files together take more
	// is killed at once, found by the runner's disk guard (within about
	// 100ms of a fast fill, a second otherwise; see diskGuard), and
	// answered RESOURCE_EXHAUSTED. Files the action deleted but still
	// holds open or mapped count too, and so does whatever lies below a
	// path longer than PATH_MAX. A tree nested more than 512 directories
	// deep, which no build hands back (the worker takes in and collects
	// 256 levels at most), is killed as past the quota rather than
	// partly counted. 0 means no quota.
	DiskQuota int64
	// DiskQuotaFiles bounds how many files, directories and links an
	// action's input root may hold that the action made (with the input
	// root's own directories; the inputs themselves do not count): past
	// it the disk guard kills the sandbox, answered RESOURCE_EXHAUSTED.
	// Without it, millions of empty files, which take no bytes, would use
	// up the inodes of the worker's filesystem. A file the action deleted
	// but still holds open or mapped counts as one; a tree nested more
	// than 512 directories deep is killed as past this bound (as past
	// DiskQuota when there is no bound). 0 means no bound.
	DiskQuotaFiles int64
	// MaxShmSize is the largest dockerShmSize (size of /dev/shm, 64 MiB by
	// default) an action may ask for; beyond it the action is refused
	// with INVALID_ARGUMENT. 0 means the action's memory limit.
	MaxShmSize int64
	// DefaultCPULimit is the CPU limit (in cores, e.g. 1.5) of actions
	// without EstimatedCPU. 0 means none.
	DefaultCPULimit float64
	// MaxSandboxes is how many sandboxes may run at once. Each running
	// sandbox gets its own host id range of 65536 uids and gids, starting
	// at IDBase + slot*65536, so concurrent tenants cannot touch each
	// other's files. A Run beyond it gets UNAVAILABLE.
	MaxSandboxes int
	// IDBase is the first host uid/gid of slot 0. The ranges up to
	// IDBase + MaxSandboxes*65536 must belong to no real user or other
	// container engine.
	IDBase uint32
	// HostHiddenPaths are host paths not shown in sandboxes that use the
	// host's root (actions without container-image): they see the host's
	// root read-only except these, the runner's state directory and its
	// image cache. The
	// worker's build directory (or one of its ancestors) must be listed —
	// a host-root action whose input root is not below a hidden path is
	// refused with FAILED_PRECONDITION, as it would see the other actions'
	// input roots — and so should the worker's file cache and the CAS.
	// The defaults cover /tmp, /home, /root, /var/lib/paddock and
	// /etc/paddock.
	HostHiddenPaths []string
	// Images configures the image cache for actions with container-image.
	Images ImagesConfig
	// Sandbox configures the launcher; zero fields take the launcher's
	// defaults.
	Sandbox sandbox.Options
}

// ImagesConfig configures the runner's image cache (package images);
// sizes are in bytes.
type ImagesConfig struct {
	// Dir holds the cache. Empty means <state_dir>/images. Every ancestor
	// must be searchable by unprivileged uids.
	Dir string
	// Platform picked from multi-platform images, "os/arch[/variant]";
	// empty means linux and this machine's architecture.
	Platform string
	// Insecure lists registry hosts that may be reached over plain HTTP.
	Insecure []string
	// AllowedRegistries, if not empty, are the only registries actions'
	// images come from ("host", "host:port", "*.domain"); an action naming
	// another fails with PERMISSION_DENIED before the runner sends
	// anything. Empty means any registry. See images.Options.
	AllowedRegistries []string
	// DockerConfig is a Docker config.json whose "auths" supply
	// registry credentials. Empty means none.
	DockerConfig string
	// RefreshTags is how long a tag's digest is trusted before the
	// registry is asked again. 0 means 5m.
	RefreshTags time.Duration
	// MaxBytes bounds the unpacked cache; unused images are evicted past
	// it, and an image whose layers unpack to more than it is refused
	// while it unpacks (its layers share the bound). 0 means unbounded;
	// DefaultConfig sets images.DefaultMaxBytes.
	MaxBytes int64
	// Tenants holds registry credentials per tenant, by the tenant names
	// of the farm's auth policy (the worker names each action's tenant).
	// A tenant's pulls use its own credentials, then DockerConfig's, which
	// every tenant shares. With any tenant listed, a cached image is served
	// to a tenant only after the registry let that tenant's credentials,
	// or anyone's for a public image, read it within AccessTTL; otherwise
	// the action fails with PERMISSION_DENIED naming the image.
	Tenants map[string]TenantImagesConfig
	// AccessTTL is how long a successful access check is trusted. 0 means
	// 5m. Refusals are never remembered.
	AccessTTL time.Duration
}

// TenantImagesConfig is one tenant's entry in images.tenants.
type TenantImagesConfig struct {
	// DockerConfig is a Docker config.json holding the tenant's registry
	// credentials ("auths"). Only the runner reads it, again whenever it
	// changes; keep it readable by the runner's user alone (mode 0600).
	DockerConfig string
}

// CacheOptions are the image cache's options from c: everything but the
// logger and the metrics registry, which the caller adds.
func (c Config) CacheOptions() images.Options {
	i := c.Images
	return images.Options{
		Dir: c.ImagesDir(), Platform: i.Platform, Insecure: i.Insecure, AllowedRegistries: i.AllowedRegistries,
		DockerConfig: i.DockerConfig, RefreshTags: i.RefreshTags, MaxBytes: i.MaxBytes,
		Tenants: i.TenantCredentials(), AccessTTL: i.AccessTTL,
	}
}

// TenantCredentials is Tenants in the image cache's terms.
func (c ImagesConfig) TenantCredentials() map[string]images.TenantCredentials {
	if len(c.Tenants) == 0 {
		return nil
	}
	m := make(map[string]images.TenantCredentials, len(c.Tenants))
	for t, tc := range c.Tenants {
		m[t] = images.TenantCredentials{DockerConfig: tc.DockerConfig}
	}
	return m
}

// defaultHostHiddenPaths are never shown from the host's root: kernel and
// runtime filesystems (the sandbox mounts its own /proc, /dev, /tmp),
// people's homes, removable and boot media, Paddock's default data
// directory, and /etc/paddock, where the docs keep its configs and
// secrets (a worker's token file left readable by all there was read by
// a tenant's action, which then wrote another tenant's action cache as
// the worker).
var defaultHostHiddenPaths = []string{
	"/proc", "/sys", "/dev", "/run", "/tmp", "/boot", "/root", "/home",
	"/mnt", "/media", "/srv", "/lost+found", "/var/lib/paddock", "/etc/paddock",
}

// alwaysHiddenPaths are hidden whatever host_hidden_paths says: where
// the docs keep Paddock's data and its configs and secrets. A config
// lists host_hidden_paths in full, so one written before /etc/paddock
// joined the defaults (the shipped example, a --print-config copy) kept
// it shown after an upgrade, a worker token readable by all with it.
var alwaysHiddenPaths = []string{"/var/lib/paddock", "/etc/paddock"}

// hiddenPathsOf is every host path cfg's host-root sandboxes do not see:
// the configured ones, alwaysHiddenPaths, the runner's state (bundles,
// skeletons), its image cache, and the socket's private directory
// (Listen's).
func hiddenPathsOf(cfg Config) []string {
	hide := append(append(append([]string(nil), cfg.HostHiddenPaths...), alwaysHiddenPaths...), filepath.Clean(cfg.StateDir), filepath.Clean(cfg.ImagesDir()))
	if sock, err := filepath.Abs(cfg.Socket); err == nil && cfg.Socket != "" {
		hide = append(hide, socketDir(sock))
	}
	return hide
}

// DefaultConfig returns the defaults a config file overrides.
func DefaultConfig() Config {
	return Config{
		Socket:          "/run/paddock/runner.sock",
		StateDir:        "/var/lib/paddock/runner",
		InputRootPath:   "/work",
		DefaultTimeout:  time.Hour,
		DefaultUser:     "0:0",
		PidsLimit:       4096,
		DiskQuota:       10 << 30,
		DiskQuotaFiles:  1_000_000,
		MaxSandboxes:    64,
		IDBase:          1_000_000,
		HostHiddenPaths: append([]string(nil), defaultHostHiddenPaths...),
		Images:          ImagesConfig{RefreshTags: images.DefaultRefreshTags, AccessTTL: images.DefaultAccessTTL, MaxBytes: images.DefaultMaxBytes},
		Sandbox:         sandbox.DefaultOptions(),
	}
}

// Validate checks a config after loading.
func (c *Config) Validate() error {
	if !path.IsAbs(c.StateDir) {
		return fmt.Errorf("state_dir %q: want an absolute path", c.StateDir)
	}
	if err := rev2.CheckInputRootPath(c.InputRootPath); err != nil {
		return fmt.Errorf("input_root_path: %w", err)
	}
	if c.DefaultTimeout < 0 {
		return errors.New("default_timeout: negative")
	}
	if _, _, err := rev2.ParseUserSpec(c.DefaultUser); err != nil {
		return fmt.Errorf("default_user: %w", err)
	}
	for k := range c.DefaultEnvironment {
		if err := checkEnvName(k); err != nil {
			return fmt.Errorf("default_environment: %w", err)
		}
	}
	if c.PidsLimit < 0 || c.DefaultCPULimit < 0 || c.Concurrency < 0 || c.DiskQuotaFiles < 0 {
		return errors.New("pids_limit, default_cpu_limit, concurrency and disk_quota_files must not be negative")
	}
	if cpu := c.DefaultCPULimit; cpu != 0 && !(cpu >= rev2.MinCPUCores && cpu <= rev2.MaxCPUCores) { // NaN too
		return fmt.Errorf("default_cpu_limit: %v; want 0 (none) or %g to %d cores", cpu, rev2.MinCPUCores, rev2.MaxCPUCores)
	}
	for _, l := range []struct {
		name string
		v    int64
	}{{"default_memory_limit", c.DefaultMemoryLimit}, {"max_memory_limit", c.MaxMemoryLimit}, {"tmp_size", c.TmpSize},
		{"max_shm_size", c.MaxShmSize}, {"disk_quota", c.DiskQuota}} {
		if l.v != 0 && l.v < minMemoryLimit {
			return fmt.Errorf("%s: %d bytes; want 0 (the default) or at least 1MiB", l.name, l.v)
		}
	}
	if c.MaxMemoryLimit != 0 && c.DefaultMemoryLimit > c.MaxMemoryLimit {
		return fmt.Errorf("default_memory_limit %d is above max_memory_limit %d", c.DefaultMemoryLimit, c.MaxMemoryLimit)
	}
	if c.MaxSandboxes < 1 {
		return errors.New("max_sandboxes: want at least 1")
	}
	if c.IDBase == 0 {
		return errors.New("id_base: 0 would map container root to host root")
	}
	if uint64(c.IDBase)+uint64(c.MaxSandboxes)*sandbox.DefaultIDRange > 1<<32-1 {
		return fmt.Errorf("id_base %d + max_sandboxes %d * 65536 overflows 32-bit ids", c.IDBase, c.MaxSandboxes)
	}
	for _, p := range c.HostHiddenPaths {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return fmt.Errorf("host_hidden_paths: %q: want a clean absolute path other than /", p)
		}
	}
	for t, tc := range c.Images.Tenants {
		if t == "" || !path.IsAbs(tc.DockerConfig) {
			return fmt.Errorf("images.tenants.%s.docker_config: %q: want an absolute path", t, tc.DockerConfig)
		}
	}
	if c.Images.AccessTTL < 0 {
		return errors.New("images.access_ttl: negative")
	}
	if err := c.Sandbox.Check(); err != nil {
		return fmt.Errorf("sandbox.%w", err)
	}
	for _, n := range c.AcceptedProperties {
		if n == "" || strings.TrimSpace(n) != n {
			return fmt.Errorf("accepted_properties: %q is not a property name", n)
		}
	}
	return nil
}

// WithHostLimits returns c with the memory defaults that depend on the
// host resolved: hostMemory is the host's total memory in bytes, cpus its
// number of CPUs. Pure; New calls it with the host's figures, and
// `--print-config` may too, to say what a 0 stands for on this host
// without a copy of the rule.
func (c Config) WithHostLimits(hostMemory int64, cpus int) Config {
	if c.Concurrency == 0 {
		c.Concurrency = max(cpus, 1)
	}
	if c.MaxMemoryLimit == 0 {
		c.MaxMemoryLimit = int64(hostMemory)
	}
	if c.DefaultMemoryLimit == 0 {
		// Whole MiB, as the limit reads in messages.
		share := ((hostMemory - hostMemoryReserve(hostMemory)) / int64(c.Concurrency)) &^ (1<<20 - 1)
		c.DefaultMemoryLimit = max(share, minMemoryLimit)
	}
	c.DefaultMemoryLimit = min(c.DefaultMemoryLimit, c.MaxMemoryLimit)
	return c
}

// hostMemoryReserve is the host memory the default memory limit leaves to
// what is not an action: the runner, the worker and the spawner (or
// `paddock up` with them all), storage and the scheduler if they share the
// host, the kernel, and the page cache that the input files, the image
// cache and the disk CAS are read through. Without it, Concurrency actions
// at their default limits could together take all of the host's memory,
// and the farm would then thrash or lose a process of its own to the OOM
// killer. A tenth of the host keeps a large host's page cache useful;
// 256 MiB leaves a small host room for the farm's own Go processes and
// some page cache; past 4 GiB the farm's own needs do not grow with the
// host, and more would only shrink the actions' share. It is never more than half the host, so
// that a tiny host (a CI VM of 512 MiB) still runs actions.
func hostMemoryReserve(hostMemory int64) int64 {
	const minReserve, maxReserve = 256 << 20, 4 << 30
	return min(max(hostMemory/10, minReserve), maxReserve, hostMemory/2)
}

// ImagesDir is where the image cache lives: images.dir, or "images" under
// the state directory. The one place that default is written.
func (c *Config) ImagesDir() string {
	if c.Images.Dir != "" {
		return c.Images.Dir
	}
	return path.Join(c.StateDir, "images")
}
