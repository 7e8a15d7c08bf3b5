// Package runner is the Runner service (api/runnerpb): it runs one build
// action at a time per request in a sandbox, for a worker on the same
// machine, over a UNIX socket. It knows nothing of storage: the worker has
// built the input root on disk and collects the outputs from it afterwards.
//
// # Lifecycle
//
// `paddock runner` loads a Config, starts a sandbox.Launcher and an
// images.Cache, calls New (which removes bundles a crashed runner left in
// the state directory), Listen (a 0600 socket) and serves. The worker calls
// Dial and WaitReady, then Run per action. Each Run:
//
//  1. parses the platform properties (parsePlatform; unknown names are
//     INVALID_ARGUMENT unless declared in Config.AcceptedProperties,
//     routing keys are ignored);
//  2. takes a free id slot: a host uid/gid range of 65536 of its own while
//     it runs (idSlots);
//  3. resolves the rootfs: the image's flattened tree from the images cache
//     with container-image, otherwise a view of the host's root (hostView:
//     a skeleton directory, shared by the actions with the same plan, with
//     the host's directories bind-mounted read-only onto it, minus hidden
//     paths; hostViews keeps each plan while the host directories it was
//     made from are unchanged);
//  4. resolves the user (dockerRunAsRoot, dockerUser, the image's User, or
//     Config.DefaultUser) and builds the runtime-spec (buildSpec, a pure
//     function, golden-tested in testdata/spec);
//  5. chowns the input root's directories to the sandbox user's host ids,
//     leaving files read-only and owned by the worker's uid, which the
//     sandbox does not map;
//  6. runs the spec with the launcher, in the slot's bundle directory (the
//     native launcher takes the spec in memory; for an external OCI
//     runtime config.json is written there and removed when the action
//     ends), and translates the sandbox.Result (timeout →
//     DEADLINE_EXCEEDED, cancellation → CANCELLED, OOM kills and pids limit
//     hits flagged, resource usage) into the RunResponse. Bundles and
//     skeletons left by a crash go at the next start.
//
// Errors go into the response's status_code/status_message; a non-zero
// exit code is a result, not an error.
//
// # Concurrency
//
// A Service serves concurrent Runs, each in its own id slot and that
// slot's bundle directory. It holds no lock while a sandbox runs.
package runner
