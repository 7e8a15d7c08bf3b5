package sandbox

import (
	"os"
	"runtime"
	"strconv"
)

// The launcher re-executes its own binary for two roles, told apart by an
// environment variable (set to exactly one value in an otherwise empty
// environment) and argv[0].
const (
	roleEnv     = "PADDOCK_SANDBOX_ROLE"
	warmEnv     = "PADDOCK_SANDBOX_WARM_INITS"
	roleSpawner = "spawner"
	roleInit    = "init"
	spawnerArg0 = "paddock-sandbox-spawner"
	initArg0    = "paddock-sandbox-init"
)

// Reexec runs the sandbox spawner or init role if this process was started
// as one, and then exits; otherwise it returns false at once. Call it first
// thing in main (and in TestMain of tests that start sandboxes), before
// anything else starts goroutines or reads flags.
func Reexec() bool {
	if len(os.Args) == 0 {
		return false
	}
	switch {
	case os.Getenv(roleEnv) == roleSpawner && os.Args[0] == spawnerArg0:
		depth, _ := strconv.Atoi(os.Getenv(warmEnv))
		os.Exit(runSpawner(depth))
	case os.Getenv(roleEnv) == roleInit && os.Args[0] == initArg0:
		// Capabilities, no_new_privs, the cgroup namespace and seccomp are
		// per thread: do all of it, and fork the command, on this one.
		runtime.LockOSThread()
		os.Exit(runInit())
	}
	return false
}
