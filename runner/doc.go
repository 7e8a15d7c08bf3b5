// Package runner is the Runner service (api/runnerpb): it runs one build
// action at a time per request in a sandbox, for a worker on the same
// machine, over a UNIX socket. It knows nothing of storage: the worker has
// built the input root on disk and collects the outputs from it afterwards.
//
// # Lifecycle
//
// `paddock runner` loads a Config, starts a sandbox.Launcher and an
// images.Cache, calls New (which removes bundles a crashed runner left in
// the state directory), Listen (a 0600 socket, made in a private directory kept beside it) and serves. The worker calls
// Dial and WaitReady, then Run per action. Each Run:
//
//  1. checks the request and parses the platform properties
//     (parsePlatform; unknown names are INVALID_ARGUMENT unless declared in
//     Config.AcceptedProperties, routing keys are ignored);
//  2. resolves the rootfs: the image's flattened tree from the images
//     cache with container-image (a pull holds no slot), otherwise a view
//     of the host's root (hostViews: a plan kept while the host directories
//     it was read from are unchanged, and a skeleton directory shared by
//     the actions with the same plan, with the host's directories
//     bind-mounted read-only onto it, minus hidden paths);
//  3. resolves the user (dockerRunAsRoot, dockerUser, the image's User, or
//     Config.DefaultUser);
//  4. takes a free id slot: a host uid/gid range of 65536 of its own while
//     it runs (idSlots; a slot needed only because cancelled Runs still
//     hold lower ones is transient, and the launcher keeps no init warm
//     for it);
//  5. builds the runtime-spec (buildSpec, a pure function, golden-tested in
//     testdata/spec) and chowns the action's directory (mode 0700, the
//     worker's) and the input root's directories to the sandbox user's
//     host ids, leaving files read-only and owned by the worker's uid,
//     which the sandbox does not map;
//  6. runs it with the launcher, handing the native launcher the spec in
//     memory (an external runtime gets config.json in the slot's bundle
//     directory, removed afterwards), while a diskGuard watches the input
//     root and kills the sandbox past disk_quota; and translates the
//     sandbox.Result (response: timeout → DEADLINE_EXCEEDED, cancellation →
//     CANCELLED, the disk quota → RESOURCE_EXHAUSTED,
//     OOM kills and pids limit hits anywhere in the sandbox flagged and
//     described in status_message, resource usage) into the RunResponse.
//     The limits (memory, /tmp, /dev/shm, disk, pids) come from the
//     platform and the config, whose host-dependent defaults New resolves
//     (Config.WithHostLimits). A set-up
//     that failed because a bind source vanished meanwhile
//     (sandbox.ErrMountSourceMissing) is retried once with a fresh plan.
//     Bundles and skeletons left by a crash go at the next start.
//
// A Run cancelled before its sandbox starts starts none; whatever its
// set-up ran into meanwhile (the worker removes an abandoned action's
// directory at once) is answered and logged as the cancellation.
//
// Errors go into the response's status_code/status_message; a non-zero
// exit code is a result, not an error. A full disk (ENOSPC, EDQUOT) at
// any step of setting up a sandbox, in the runner or across the sandbox
// spawner's pipe (which carries the errno), is RESOURCE_EXHAUSTED naming
// the step and no host path (diskFull); the path goes to the log.
//
// # Concurrency
//
// A Service serves concurrent Runs, each in its own id slot and that
// slot's bundle directory. It holds no lock while a sandbox runs.
package runner
