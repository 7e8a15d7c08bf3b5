package sandbox

import (
	"os"
	"strconv"

	"github.com/paddock-build/paddock/internal/timerslack"
)

// The launcher re-executes its own binary as the spawner, told apart by an
// environment variable (set to exactly one value in an otherwise empty
// environment) and argv[0]. Sandbox inits are a program of their own
// (sandbox/internal/initprog) and never re-execute this binary.
const (
	roleEnv     = "PADDOCK_SANDBOX_ROLE"
	warmEnv     = "PADDOCK_SANDBOX_WARM_INITS"
	roleSpawner = "spawner"
	spawnerArg0 = "paddock-sandbox-spawner"
	// initArg0 is the init's argv[0], which names it in ps.
	initArg0 = "paddock-sandbox-init"
)

// Reexec runs the sandbox spawner if this process was started as one, and
// then exits; otherwise it returns false at once. Call it first thing in
// main (and in TestMain of tests that start sandboxes), before anything
// else starts goroutines or reads flags.
func Reexec() bool {
	if len(os.Args) == 0 {
		return false
	}
	if os.Getenv(roleEnv) == roleSpawner && os.Args[0] == spawnerArg0 {
		// Best effort, as in main: a spawner started by a farm process
		// has the farm's slack already; one started by a test does not.
		// Its sandboxes get the kernel's default back (initStart.start).
		_ = timerslack.Set(timerslack.Farm)
		depth, _ := strconv.Atoi(os.Getenv(warmEnv))
		os.Exit(runSpawner(depth))
	}
	return false
}
