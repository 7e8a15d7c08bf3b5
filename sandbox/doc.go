// Package sandbox runs a command described by an OCI runtime-spec bundle
// (config.json and a rootfs) in fresh Linux namespaces with cgroup limits,
// and reports how it ended. It knows nothing of REv2: the runner turns an
// action into a bundle and a Request, and a Result back into an
// ActionResult.
//
// # Lifecycle
//
// main calls Reexec first: this binary is re-executed for two roles. New
// removes stale sandbox cgroups left by a crashed runner and starts the
// spawner, a small long-lived child process. The spawner clones inits into
// new user, mount, pid, ipc, uts and (unless the spec keeps the host's)
// network namespaces, with the spec's uid/gid mappings (host id 0 is
// refused), each born inside its own cgroup (v1 or v2, via
// github.com/containerd/cgroups/v3). It keeps one such init started ahead,
// so that fork, exec and the Go runtime's start-up are off the critical
// path. Each Launcher.Run sends the bundle to the spawner, which applies
// linux.resources to the init's cgroup and hands it the spec. The init
// builds the mount tree (read-only rootfs, bind mounts, /proc, a minimal
// /dev, tmpfs, masked and read-only paths; destinations resolved inside the
// rootfs without following symlinks), pivot_roots, sets the hostname,
// rlimits, no_new_privs, capabilities and a seccomp filter, and forks the
// command while it stays pid 1 to reap. When the command exits, the init
// kills and reaps everything left and reports; the spawner answers, then
// the init exits (its pid, mount and network namespaces go with it) and the
// cgroup is removed. Timeouts and cancellation send SIGTERM to the whole
// sandbox and SIGKILL after a grace period.
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
// is ignored) and refuses process.terminal and hooks. Other fields are
// ignored.
//
// Cloning from the spawner rather than the caller matters: with
// CLONE_NEWUSER Go forks rather than vforks, which costs tens of
// milliseconds from a process with a large heap (the runner's).
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
