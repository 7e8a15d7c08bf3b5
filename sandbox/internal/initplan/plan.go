// Package initplan is the contract between the sandbox spawner and the
// sandbox init: the Plan the spawner sends (every mount, the process, its
// credentials and limits, the seccomp program) and the Status the init
// answers, with a small binary codec for both.
//
// The init is a program of its own (sandbox/internal/initprog, freestanding
// C) that starts once per sandbox, so it must start fast: it parses no JSON
// and no runtime-spec types, and it resolves nothing on the host by name
// except the bind sources it opens. Everything that can be decided before
// the clone is decided by the spawner, in a pure function, and arrives here
// as plain values. DecodePlan is the Go reference of the format; the init's
// plan.c decodes the same fields in the same order, and a change to one
// must be made in the other (initbin's tests run the compiled init on
// EncodePlan's output and on broken plans).
package initplan

// MountKind says what a Mount step does.
type MountKind uint8

const (
	// MountBind clones the mount tree at Source (a host path, opened before
	// the tree is built) onto Dest, recursively, with Attrs applied.
	MountBind MountKind = iota + 1
	// MountFS mounts a fresh filesystem of type FSType (proc, tmpfs,
	// devpts, mqueue, sysfs) at Dest with Flags and Data.
	MountFS
	// MountMask hides Dest: an empty read-only tmpfs over a directory,
	// /dev/null over anything else. A missing Dest is skipped.
	MountMask
	// MountReadonly binds Dest onto itself read-only. A missing Dest is
	// skipped.
	MountReadonly
	// MountSymlink creates a symlink at Dest pointing to Source (an
	// existing entry is left alone).
	MountSymlink
)

// Mount is one step of building the sandbox's mount tree. Steps run in
// order; every Dest is resolved inside the new root without following
// symlinks.
type Mount struct {
	Kind   MountKind
	Source string
	Dest   string
	FSType string
	Flags  uint64 // mount(2) flags, for MountFS
	Attrs  uint64 // MOUNT_ATTR_* flags, for MountBind
	Data   string // filesystem options, for MountFS
}

// Rlimit is one resource limit (setrlimit(2)).
type Rlimit struct {
	Resource uint32
	Cur, Max uint64
}

// Plan is one sandbox: how to build its root and how to start its command.
type Plan struct {
	// Rootfs is the host path of the root filesystem, absolute and clean;
	// "/" is the host's own root (already the root of the init's mount
	// namespace).
	Rootfs       string
	ReadonlyRoot bool
	Mounts       []Mount
	// Hostname is set when non-empty (the init has its own UTS namespace).
	Hostname string
	// LoopbackUp brings lo up (a fresh network namespace).
	LoopbackUp bool
	// CgroupNS makes the init's cgroup the root of a new cgroup namespace.
	CgroupNS bool
	Rlimits  []Rlimit
	Umask    uint32

	Args []string
	Env  []string
	Cwd  string
	UID  uint32
	GID  uint32
	// Groups are the supplementary groups of the command.
	Groups []uint32
	// Bounding, Inheritable and Ambient are capability masks (bit n is
	// capability n). Capabilities above LastCap are not touched.
	Bounding, Inheritable, Ambient uint64
	LastCap                        uint32
	// Seccomp is a classic BPF program, 8 bytes per instruction in the
	// kernel's struct sock_filter layout (little-endian), installed on
	// every thread after no_new_privs. Empty means no filter.
	Seccomp []byte
}

// Status is what the init reports once the sandbox has ended (or could
// not be set up).
type Status struct {
	// Error is set when the sandbox could not be set up or the command not
	// started; the command did not run.
	Error string
	// NotStarted: the error is the command's (not found, not executable),
	// not the sandbox's.
	NotStarted bool
	// MissingSource: the error is a bind mount's source that does not
	// exist (it may have gone since the caller planned the mount).
	MissingSource bool
	// ExitCode is the command's exit status, -1 if a signal ended it.
	ExitCode int32
	// Signal is the signal that ended the command, or 0.
	Signal int32
	// Usage of every process the init reaped (RUSAGE_CHILDREN).
	UserNanos, SystemNanos int64
	MaxRSSKiB              int64
	MinorFaults            int64
	MajorFaults            int64
	VoluntarySwitches      int64
	InvoluntarySwitches    int64
}

// Terminate is the byte the spawner writes to the control pipe after the
// plan to ask the init to pass SIGTERM to the command as soon as it has
// started (a termination that raced with the command's start).
const Terminate byte = 'T'
