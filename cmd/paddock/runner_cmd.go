package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/images"
	"github.com/paddock-build/paddock/runner"
	"github.com/paddock-build/paddock/sandbox"
)

// runRunner serves the Runner protocol on a UNIX socket: `paddock runner
// [--config FILE] [--socket PATH] [--state DIR] [--concurrency N]
// [--hide PATH]... [--print-config]`. It needs
// root (user namespaces with id ranges, cgroups, chown of input roots).
// `paddock up` starts it as a child with its runner section written to a
// file, which hides up's data directory (worker build directories, CAS)
// from host-root sandboxes.
const runnerUsage = `usage: paddock runner [--socket PATH] [flags]
       paddock runner --config FILE [flags]

Runs actions for the worker on this machine, each in a fresh sandbox (user,
mount, pid, ipc, uts and network namespaces, a cgroup of its own), over the
gRPC UNIX socket PATH ('paddock worker --runner PATH'). Root, with a
delegated cgroup subtree (deploy/systemd/paddock-runner.service).
`

func runRunner(ctx context.Context, args []string) error {
	file, err := loadRoleConfig(args, configs.DefaultRunner)
	if err != nil {
		return err
	}
	fs, rf := newRoleFlagSet("runner", runnerUsage, "configs/runner.yaml")
	registerRunnerFlags(fs, &file)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg := file.Config()
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if rf.print {
		return printConfig(os.Stdout, file, runnerNotes(file, thisMachine(), ""))
	}
	logger, err := rf.setup()
	if err != nil {
		return err
	}
	defer watchStop(ctx, logger, "runner")()
	obs := newObservability(logger)
	runMetrics := runner.NewMetrics()
	obs.reg.MustRegister(runMetrics.Collectors()...)

	launcher, err := sandbox.New(cfg.Sandbox)
	if err != nil {
		return fmt.Errorf("start sandbox launcher: %w", err)
	}
	defer launcher.Close()
	// The cache lives under the state directory, which New makes 0711;
	// create it first so the images cache finds a searchable parent.
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return err
	}
	imageOpts := cfg.CacheOptions()
	imageOpts.Logger, imageOpts.Metrics = logger, obs.reg
	cache, err := images.New(imageOpts)
	if err != nil {
		return fmt.Errorf("image cache: %w", err)
	}
	defer cache.Close()
	svc, err := runner.New(runner.Options{Config: cfg, Launcher: launcher, Images: cache, Logger: logger, Version: version})
	if err != nil {
		return err
	}
	lis, err := runner.Listen(cfg.Socket)
	if err != nil {
		return err
	}
	g := obs.newGRPCServer(append(runner.ServerOptions(), grpc.ChainUnaryInterceptor(runMetrics.UnaryServerInterceptor()))...)
	svc.Register(g)
	obs.finish(g)
	if rf.httpAddr != "" {
		if _, err := obs.startHTTP(ctx, rf.httpAddr, nil, nil); err != nil {
			return err
		}
	}
	logger.Info("runner serving", "socket", cfg.Socket, "state", cfg.StateDir)
	// Scripts and `paddock up` may read the socket from this line.
	fmt.Printf("paddock runner listening on %s\n", cfg.Socket)
	return serveUntilDone(ctx, g, lis, obs.health.Shutdown)
}

// registerRunnerFlags adds the runner's flags to fs, each writing into
// cfg. `paddock up` passes its runner child a config file, not these.
func registerRunnerFlags(fs *flag.FlagSet, cfg *configs.Runner) {
	fs.StringVar(&cfg.Socket, "socket", cfg.Socket, "UNIX socket to serve on (socket)")
	fs.StringVar(&cfg.StateDir, "state", cfg.StateDir, "state directory: bundles and, by default, the image cache (state_dir)")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "the actions the worker runs at once (give the worker's --concurrency), which sizes the default memory limit (host memory / concurrency); 0: the number of CPUs (concurrency)")
	fs.Var((*hiddenPaths)(&cfg.HostHiddenPaths), "hide", "a host path to hide from actions on the host's root, in addition to the config's host_hidden_paths (repeatable; e.g. the worker's data directory)")
}

// hiddenPaths is the repeatable --hide: each one is made absolute and
// added to the config's list.
type hiddenPaths []string

func (s *hiddenPaths) String() string { return "" }

func (s *hiddenPaths) Set(v string) error {
	abs, err := filepath.Abs(v)
	if err != nil {
		return err
	}
	*s = append(*s, abs)
	return nil
}
