package configs

import (
	"time"

	"github.com/paddock-build/paddock/runner"
	"github.com/paddock-build/paddock/sandbox"
)

// Runner configures `paddock runner`, and the runner section of `paddock
// up` (which puts its socket and state directory under its data
// directory). It is the file form of runner.Config: the same fields, sizes
// written with units; see runner.Config for what each one means and
// configs/runner.yaml for every key with its default.
type Runner struct {
	Socket                string            `yaml:"socket"`
	StateDir              string            `yaml:"state_dir"`
	InputRootPath         string            `yaml:"input_root_path"`
	DefaultTimeout        time.Duration     `yaml:"default_timeout"`
	DefaultUser           string            `yaml:"default_user"`
	DefaultEnvironment    map[string]string `yaml:"default_environment"`
	MergeImageEnvironment bool              `yaml:"merge_image_environment"`
	AllowPrivileged       bool              `yaml:"allow_privileged"`
	AllowHostNetwork      bool              `yaml:"allow_host_network"`
	AcceptedProperties    []string          `yaml:"accepted_properties"`
	PidsLimit             int64             `yaml:"pids_limit"`
	DefaultMemoryLimit    ByteSize          `yaml:"default_memory_limit"`
	MaxMemoryLimit        ByteSize          `yaml:"max_memory_limit"`
	Concurrency           int               `yaml:"concurrency"`
	TmpSize               ByteSize          `yaml:"tmp_size"`
	DiskQuota             ByteSize          `yaml:"disk_quota"`
	DiskQuotaFiles        int64             `yaml:"disk_quota_files"`
	MaxShmSize            ByteSize          `yaml:"max_shm_size"`
	DefaultCPULimit       float64           `yaml:"default_cpu_limit"`
	MaxSandboxes          int               `yaml:"max_sandboxes"`
	IDBase                uint32            `yaml:"id_base"`
	HostHiddenPaths       []string          `yaml:"host_hidden_paths"`
	Images                RunnerImages      `yaml:"images"`
	Sandbox               RunnerSandbox     `yaml:"sandbox"`
}

// RunnerImages is the file form of runner.ImagesConfig.
type RunnerImages struct {
	Dir      string   `yaml:"dir"`
	Platform string   `yaml:"platform"`
	Insecure []string `yaml:"insecure"`
	// AllowedRegistries is runner.ImagesConfig.AllowedRegistries.
	AllowedRegistries []string      `yaml:"allowed_registries"`
	DockerConfig      string        `yaml:"docker_config"`
	RefreshTags       time.Duration `yaml:"refresh_tags"`
	MaxBytes          ByteSize      `yaml:"max_bytes"`
	// Tenants holds each tenant's registry credentials (a file path,
	// never the secret itself).
	Tenants   map[string]RunnerTenantImages `yaml:"tenants"`
	AccessTTL time.Duration                 `yaml:"access_ttl"`
}

// RunnerTenantImages is the file form of runner.TenantImagesConfig.
type RunnerTenantImages struct {
	DockerConfig string `yaml:"docker_config"`
}

// RunnerSandbox is the file form of sandbox.Options (the launcher): the
// same fields, in the same order, the output limit a size written with
// units. TestRunnerConversion checks that every field goes both ways.
type RunnerSandbox struct {
	Runtime      string        `yaml:"runtime"`
	RuntimeArgs  []string      `yaml:"runtime_args"`
	RuntimeRoot  string        `yaml:"runtime_root"`
	CgroupParent string        `yaml:"cgroup_parent"`
	KillGrace    time.Duration `yaml:"kill_grace"`
	OutputLimit  ByteSize      `yaml:"output_limit"`
	WarmInits    int           `yaml:"warm_inits"`
	Executable   string        `yaml:"executable"`
}

// Options is the sandbox package's form of s.
func (s RunnerSandbox) Options() sandbox.Options {
	return sandbox.Options{
		Runtime: s.Runtime, RuntimeArgs: s.RuntimeArgs, RuntimeRoot: s.RuntimeRoot, CgroupParent: s.CgroupParent,
		KillGrace: s.KillGrace, OutputLimit: int64(s.OutputLimit), WarmInits: s.WarmInits, Executable: s.Executable,
	}
}

// runnerSandboxFile is o in its file form: Options' inverse.
func runnerSandboxFile(o sandbox.Options) RunnerSandbox {
	return RunnerSandbox{
		Runtime: o.Runtime, RuntimeArgs: o.RuntimeArgs, RuntimeRoot: o.RuntimeRoot, CgroupParent: o.CgroupParent,
		KillGrace: o.KillGrace, OutputLimit: ByteSize(o.OutputLimit), WarmInits: o.WarmInits, Executable: o.Executable,
	}
}

// DefaultRunner is runner.DefaultConfig in its file form.
func DefaultRunner() Runner { return runnerFile(runner.DefaultConfig()) }

// Config is the runner package's form of r. TestRunnerConversion checks
// that every field goes both ways.
func (r Runner) Config() runner.Config {
	return runner.Config{
		Socket: r.Socket, StateDir: r.StateDir, InputRootPath: r.InputRootPath,
		DefaultTimeout: r.DefaultTimeout, DefaultUser: r.DefaultUser, DefaultEnvironment: r.DefaultEnvironment,
		MergeImageEnvironment: r.MergeImageEnvironment, AllowPrivileged: r.AllowPrivileged, AllowHostNetwork: r.AllowHostNetwork,
		AcceptedProperties: r.AcceptedProperties, PidsLimit: r.PidsLimit,
		DefaultMemoryLimit: int64(r.DefaultMemoryLimit), MaxMemoryLimit: int64(r.MaxMemoryLimit), Concurrency: r.Concurrency,
		TmpSize: int64(r.TmpSize), DiskQuota: int64(r.DiskQuota), DiskQuotaFiles: r.DiskQuotaFiles, MaxShmSize: int64(r.MaxShmSize),
		DefaultCPULimit: r.DefaultCPULimit, MaxSandboxes: r.MaxSandboxes, IDBase: r.IDBase, HostHiddenPaths: r.HostHiddenPaths,
		Images: runner.ImagesConfig{
			Dir: r.Images.Dir, Platform: r.Images.Platform, Insecure: r.Images.Insecure, DockerConfig: r.Images.DockerConfig,
			AllowedRegistries: r.Images.AllowedRegistries,
			RefreshTags:       r.Images.RefreshTags, MaxBytes: int64(r.Images.MaxBytes),
			Tenants:   convertMap(r.Images.Tenants, func(t RunnerTenantImages) runner.TenantImagesConfig { return runner.TenantImagesConfig(t) }),
			AccessTTL: r.Images.AccessTTL,
		},
		Sandbox: r.Sandbox.Options(),
	}
}

// runnerFile is c in its file form: Config's inverse.
func runnerFile(c runner.Config) Runner {
	return Runner{
		Socket: c.Socket, StateDir: c.StateDir, InputRootPath: c.InputRootPath,
		DefaultTimeout: c.DefaultTimeout, DefaultUser: c.DefaultUser, DefaultEnvironment: c.DefaultEnvironment,
		MergeImageEnvironment: c.MergeImageEnvironment, AllowPrivileged: c.AllowPrivileged, AllowHostNetwork: c.AllowHostNetwork,
		AcceptedProperties: c.AcceptedProperties, PidsLimit: c.PidsLimit,
		DefaultMemoryLimit: ByteSize(c.DefaultMemoryLimit), MaxMemoryLimit: ByteSize(c.MaxMemoryLimit), Concurrency: c.Concurrency,
		TmpSize: ByteSize(c.TmpSize), DiskQuota: ByteSize(c.DiskQuota), DiskQuotaFiles: c.DiskQuotaFiles, MaxShmSize: ByteSize(c.MaxShmSize),
		DefaultCPULimit: c.DefaultCPULimit, MaxSandboxes: c.MaxSandboxes, IDBase: c.IDBase, HostHiddenPaths: c.HostHiddenPaths,
		Images: RunnerImages{
			Dir: c.Images.Dir, Platform: c.Images.Platform, Insecure: c.Images.Insecure, DockerConfig: c.Images.DockerConfig,
			AllowedRegistries: c.Images.AllowedRegistries,
			RefreshTags:       c.Images.RefreshTags, MaxBytes: ByteSize(c.Images.MaxBytes),
			Tenants:   convertMap(c.Images.Tenants, func(t runner.TenantImagesConfig) RunnerTenantImages { return RunnerTenantImages(t) }),
			AccessTTL: c.Images.AccessTTL,
		},
		Sandbox: runnerSandboxFile(c.Sandbox),
	}
}

// convertMap is m with each value converted; nil for nil.
func convertMap[A, B any](m map[string]A, f func(A) B) map[string]B {
	if m == nil {
		return nil
	}
	out := make(map[string]B, len(m))
	for k, v := range m {
		out[k] = f(v)
	}
	return out
}
