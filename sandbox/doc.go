// Package sandbox runs a command described by an OCI runtime-spec bundle
// (config.json and a rootfs) in fresh Linux namespaces with cgroup limits,
// and reports how it ended. It knows nothing of REv2: the runner turns an
// action into a bundle and a Request, and a Result back into an
// ActionResult.
//
// # Lifecycle
//
// main calls Reexec first: this binary is re-executed as the spawner. New
// removes stale sandbox cgroups left by a crashed runner and starts the
// spawner, a small long-lived child process. Each Launcher.Run loads and
// validates the bundle (or takes Request.Spec in memory) and compiles it,
// in the caller's process, into the init's plan (planFor, a pure function:
// every mount step, the process, its credentials, capabilities as masks,
// rlimits, the seccomp program), which it sends to the spawner with the
// clone parameters and cgroup limits, in binary frames (spawn_protocol.go).
//
// The init is a program of its own (internal/initprog), compiled and
// embedded (internal/initbin): freestanding C on raw system calls, with no
// C library and no language runtime to start, one thread, and a decoder of
// the plan's wire format (internal/initplan encodes it). A program of that
// kind starts and exits in under 0.5 ms of CPU, where an empty Go program
// takes 5 to 6 ms on a VM where CPUID and page faults trap. The spawner
// copies it once into a memfd sealed against any write (CVE-2019-5736:
// nothing in a sandbox can reach a writable copy of any host binary) and
// executes it from there. It clones inits into new user, mount, pid, ipc,
// uts and (unless the spec keeps the host's) network namespaces, with the
// spec's uid/gid mappings (host id 0 is refused), each born inside a
// cgroup of its own (v1 or v2). It keeps Options.WarmInits inits started
// ahead per kind of clone parameters ("warm"; none after a transient
// Request), so that the clone and the exec are off the critical path.
//
// Once an init has exec'd, the spawner gives it oom_score_adj 1000
// (setOOMScoreAdj), which everything the action starts inherits: when the
// host runs out of memory, the OOM killer ends an action before any
// process of the farm. A Run takes a warm init, applies the limits to its
// cgroup and writes the plan on the init's control pipe. The init builds
// the mount tree (read-only rootfs, bind mounts, /proc, a minimal /dev,
// tmpfs, masked and read-only paths; destinations resolved inside the
// rootfs without following symlinks), pivot_roots, sets the hostname, rlimits,
// no_new_privs, capabilities and the seccomp filter, and forks the command
// while it stays pid 1 to reap. When the command exits, the init kills and
// reaps everything left and reports its status, and the spawner answers.
// The init then exits (its pid, mount and network namespaces go with it)
// and the spawner resets its cgroup and keeps it for a later sandbox
// (cgroupPool: no process left, figures from zero, limits rewritten; v2
// cgroups are removed instead) before starting the next warm init. Timeouts and cancellation send SIGTERM to every process of the
// sandbox (the spawner, from the cgroup's process list, and the init once
// it has forked the command, in case that came later); after a grace
// period the kill path ends it: the cgroup is frozen (v1 freezer; v2
// cgroup.kill, or cgroup.freeze on kernels before 5.14), every process in
// it SIGKILLed, and the cgroup thawed, so that a fork bomb cannot refill
// what is killed. A cancellation whose cause is ErrKillNow takes the kill
// path at once. Close stops the spawner (which has a process group of its
// own, so that a terminal's Ctrl-C does not kill it first) and removes
// every sandbox cgroup it left.
//
// # What of the spec is honoured
//
// The native launcher honours process (args, env, cwd, user with
// additional gids and umask, capabilities, rlimits), root (path, readonly),
// hostname, mounts (bind, proc, tmpfs, devpts, mqueue, sysfs; binds are
// always recursive), linux uid/gid mappings, namespaces (user, mount and pid
// required; joining existing ones by path is refused), resources (memory,
// pids, cpu), devices (bind-mounted from the same host path), maskedPaths
// and readonlyPaths. It always applies its own seccomp filter (linux.seccomp
// is ignored), always sets oom_score_adj 1000 (process.oomScoreAdj is
// ignored) and refuses process.terminal and hooks. Other fields are
// ignored.
//
// Cloning from the spawner rather than the caller matters: with
// CLONE_NEWUSER Go forks rather than vforks, which costs tens of
// milliseconds from a process with a large heap (the runner's). On amd64
// the spawner does not use Go's fork for the init at all (initStart: a
// clone3 with CLONE_VM, whose child runs in assembly up to its exec).
//
// The init's compiled form is committed like generated code: `make init`
// rebuilds it (with a C compiler) after a change to internal/initprog, and
// a test fails while it is stale; a change to the plan's format in
// internal/initplan must be made in initprog's plan.c too. Only linux/amd64 has one (the
// seccomp filter is x86-64's); elsewhere the native launcher cannot start
// and an external runtime must be configured.
//
// Options.Runtime selects an external OCI runtime (runc, crun, runsc)
// instead, for the same bundles.
//
// # Concurrency
//
// A Launcher is safe for concurrent use; each Run is independent. All
// sandboxes of a Launcher share its spawner; the runner should give
// concurrent sandboxes distinct id mappings if they must not share files
// they create.
package sandbox
