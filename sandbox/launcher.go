package sandbox

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Options configure a Launcher. The zero value is the native launcher with
// defaults. They are plain Go options: the file form is the sandbox
// section of the runner's config (configs.RunnerSandbox, converted to this
// type).
type Options struct {
	// Runtime is the path of an external OCI runtime (runc, crun, runsc)
	// to run bundles with. Empty selects the native launcher.
	Runtime string
	// RuntimeArgs are global flags put before the runtime's subcommand,
	// e.g. ["--systemd-cgroup"] or runsc's ["--network=none"].
	RuntimeArgs []string
	// RuntimeRoot is the runtime's state directory (its --root flag).
	// Default: /run/paddock-<runtime name>.
	RuntimeRoot string
	// CgroupParent is the cgroup (relative to each hierarchy's root) under
	// which the native launcher creates one cgroup per sandbox. Stale
	// sandbox cgroups under it are removed by New. Default "paddock-sandbox".
	CgroupParent string
	// KillGrace is how long a sandbox has between SIGTERM (timeout or
	// cancellation) and SIGKILL. Default 2s.
	KillGrace time.Duration
	// OutputLimit caps each of stdout and stderr, in bytes, when a Request
	// sets none. Default 64 MiB.
	OutputLimit int64
	// WarmInits is how many sandbox inits the native launcher keeps
	// started ahead (forked, exec'd, namespaces made, waiting for a spec)
	// for each kind of namespaces and id mappings it ran recently (at most
	// 16 kinds; none for a transient Request): a runner, one kind per id
	// slot, keeps WarmInits for each action it runs at once. Each costs a
	// few MiB. Default 2; negative disables it.
	WarmInits int
	// Executable is the binary re-executed as the spawner (it must call
	// Reexec first thing in main). Default: this process's own executable.
	Executable string
}

// DefaultOptions is the one place the launcher's defaults are written:
// withDefaults fills zero fields from it, and the runner's config starts
// from it, so `paddock runner --print-config` shows them. (RuntimeRoot's
// default depends on the runtime, Executable's on the process: left
// empty.)
func DefaultOptions() Options {
	return Options{CgroupParent: "paddock-sandbox", KillGrace: 2 * time.Second, OutputLimit: 64 << 20, WarmInits: defaultWarmInits}
}

// defaultWarmInits is DefaultOptions' WarmInits (the stress tests count
// warm inits against it).
const defaultWarmInits = 2

// Check refuses options a config file can get wrong: a negative
// KillGrace or OutputLimit (zero is the default; a negative value is a
// mistake withDefaults would take silently as the default too), and a
// CgroupParent that is not a clean relative path: New removes the stale
// sandbox cgroups under it, so "/" or ".." must not reach the host's
// other cgroups or leave the cgroup file systems.
func (o Options) Check() error {
	if o.KillGrace < 0 {
		return fmt.Errorf("kill_grace: %v is negative (0 means the default)", o.KillGrace)
	}
	if o.OutputLimit < 0 {
		return fmt.Errorf("output_limit: %d is negative (0 means the default)", o.OutputLimit)
	}
	if p := o.CgroupParent; p != "" {
		if path.IsAbs(p) || path.Clean(p) != p || p == "." || p == ".." || strings.HasPrefix(p, "../") {
			return fmt.Errorf("cgroup_parent %q: want a clean relative path under each hierarchy's root, such as paddock-sandbox", p)
		}
	}
	return nil
}

func (o Options) withDefaults() Options {
	def := DefaultOptions()
	if o.CgroupParent == "" {
		o.CgroupParent = def.CgroupParent
	}
	if o.KillGrace <= 0 {
		o.KillGrace = def.KillGrace
	}
	if o.OutputLimit <= 0 {
		o.OutputLimit = def.OutputLimit
	}
	switch {
	case o.WarmInits == 0:
		o.WarmInits = def.WarmInits
	case o.WarmInits < 0:
		o.WarmInits = 0
	}
	if o.Executable == "" {
		o.Executable = "/proc/self/exe"
	}
	return o
}

// Request is one command to run.
type Request struct {
	// Bundle is an OCI bundle directory: config.json (runtime-spec) and the
	// rootfs it names. The native launcher needs the bundle, the rootfs and
	// bind-mount sources to be reachable (search permission on every parent)
	// by the host uid that container root maps to.
	Bundle string
	// Spec, if set, is the bundle's runtime-spec, used instead of reading
	// Bundle/config.json: the native launcher then needs no config file
	// (and parses no JSON); for an external runtime it is written there.
	// Relative paths in it are still relative to Bundle.
	Spec *specs.Spec
	// Stdout and Stderr are files to create (or truncate) for the
	// command's output; empty discards it.
	Stdout, Stderr string
	// OutputLimit caps each stream in bytes; 0 uses Options.OutputLimit.
	OutputLimit int64
	// Timeout, if positive, terminates the sandbox after that long
	// (SIGTERM, then SIGKILL after Options.KillGrace); Result.TimedOut.
	Timeout time.Duration
	// Transient says that the Run's id mappings are not expected again
	// soon: the native launcher starts no warm init for them after it
	// (one it already keeps is still used). The runner sets it for an id
	// slot taken only because cancelled Runs still hold lower ones, so
	// that inits stay warm only for the slots its live Runs use.
	Transient bool
}

// backend runs bundles. There are two: the native launcher (nativeBackend)
// and an external OCI runtime (ociRuntime).
type backend interface {
	run(ctx context.Context, req Request) (*Result, error)
	close() error
}

// Launcher runs sandboxes. It is safe for concurrent use; Close it when done.
type Launcher struct {
	opts Options
	b    backend
}

// New returns a Launcher. For the native launcher it removes stale cgroups
// left under Options.CgroupParent by a spawner that is gone, and starts the
// spawner process.
func New(opts Options) (*Launcher, error) {
	opts = opts.withDefaults()
	l := &Launcher{opts: opts}
	if opts.Runtime != "" {
		b, err := newOCIRuntime(opts)
		if err != nil {
			return nil, err
		}
		l.b = b
		return l, nil
	}
	if err := checkCgroups(opts.CgroupParent); err != nil {
		return nil, err
	}
	if err := cleanStaleCgroups(opts.CgroupParent); err != nil {
		return nil, fmt.Errorf("clean stale sandbox cgroups: %w", err)
	}
	b, err := newNativeBackend(opts)
	if err != nil {
		return nil, err
	}
	l.b = b
	return l, nil
}

// Run runs req to completion. ctx cancellation terminates the sandbox like
// a timeout (Result.Canceled) and Run still returns its Result. Errors are
// for sandboxes that could not be set up or run at all.
func (l *Launcher) Run(ctx context.Context, req Request) (*Result, error) {
	if req.Bundle == "" {
		return nil, errors.New("sandbox: request has no bundle")
	}
	if req.OutputLimit <= 0 {
		req.OutputLimit = l.opts.OutputLimit
	}
	return l.b.run(ctx, req)
}

// Close stops the spawner (killing any sandbox still running).
func (l *Launcher) Close() error { return l.b.close() }
