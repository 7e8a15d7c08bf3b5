// Command paddock is the single Paddock binary. Each role of the farm is a
// subcommand; `paddock up` runs the whole farm on one machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"syscall"

	"github.com/paddock-build/paddock/internal/timerslack"
)

const usage = `usage: paddock <command> [flags]

commands:
  up         run storage, scheduler, a worker and its runner on this machine
  storage    serve CAS, Action Cache, ByteStream and Capabilities
  scheduler  serve the Execution and Operations APIs and the worker protocol
  worker     pull actions from a scheduler and run them through a runner
  runner     run actions in sandboxes for a worker, on a UNIX socket
  images     manage the container image cache (load, pull), build the role images (build)
  install    copy this binary into a directory (the runner installer image)
  bench      load-generate against any REv2 endpoint
  run        run one command on any REv2 farm, as recc does
  version    print the version

Run 'paddock <command> -h' for the flags of a command.
`

// version is set by the linker in release builds.
var version = "dev"

func main() {
	// The sandbox re-executes this binary as its spawner and as each
	// sandbox's init; those roles must take over before anything else runs.
	if sandboxReexec() {
		return
	}
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	// SIGHUP (the terminal of `make run` closed) stops as cleanly as
	// SIGTERM: it killed the process, leaving its sockets and giving
	// nothing back to the scheduler.
	ctx, stop := notifyStop(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	switch cmd {
	case "up", "storage", "scheduler", "worker", "runner":
		// The farm's long-lived processes run with a wider timer slack
		// (see internal/timerslack): fewer wake-ups of Go's system
		// monitor per action. Best effort: without CAP_SYS_NICE only
		// this thread's is set, and the role runs as it did before.
		_ = timerslack.Set(timerslack.Farm)
	}
	var err error
	switch cmd {
	case "up":
		err = runUp(ctx, args)
	case "storage":
		err = runStorage(ctx, args)
	case "scheduler":
		err = runScheduler(ctx, args)
	case "worker":
		err = runWorker(ctx, args)
	case "runner":
		err = runRunner(ctx, args)
	case "images":
		err = runImages(ctx, args)
	case "bench":
		err = runBench(ctx, args)
	case "install":
		err = runInstall(args)
	case "run":
		code := runRun(ctx, args)
		stop()
		os.Exit(code)
	case "version":
		fmt.Println("paddock", version)
	case "-h", "--help", "help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "paddock: unknown command %q\n\n%s", cmd, usage)
		os.Exit(2)
	}
	switch {
	case errors.Is(err, flag.ErrHelp):
		// -h asked for the help the flag set has printed: not a failure.
	case err != nil:
		fmt.Fprintf(os.Stderr, "paddock %s: %v\n", cmd, err)
		os.Exit(1)
	}
}
