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
// [--hide PATH]...`. It needs
// root (user namespaces with id ranges, cgroups, chown of input roots).
// `paddock up` starts it as a child with the same command line, hiding its
// data directory (worker build directories, CAS) from host-root sandboxes.
func runRunner(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("runner", flag.ContinueOnError)
	configPath := fs.String("config", "", "YAML config file (see configs/runner.yaml)")
	socket := fs.String("socket", "", "override the config's socket path")
	state := fs.String("state", "", "override the config's state directory")
	pprofAddr := fs.String("pprof-listen", "", pprofFlagUsage)
	httpAddr := fs.String("http-listen", "", httpListenUsage)
	logFormat := fs.String("log-format", "text", logFormatUsage)
	concurrency := fs.Int("concurrency", 0, "override the config's concurrency: the actions the worker runs at once, which sizes the default memory limit (host memory / concurrency)")
	var hide stringsFlag
	fs.Var(&hide, "hide", "a host path to hide from actions on the host's root, in addition to the config's host_hidden_paths (repeatable; e.g. the worker's data directory)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := loadRunnerConfig(*configPath, *socket, *state, *concurrency, hide)
	if err != nil {
		return err
	}
	logger, err := newLogger(os.Stderr, *logFormat)
	if err != nil {
		return err
	}
	obs := newObservability(logger)
	runMetrics := runner.NewMetrics()
	obs.reg.MustRegister(runMetrics.Collectors()...)
	if *pprofAddr != "" {
		if _, err := startPprof(*pprofAddr, logger); err != nil {
			return err
		}
	}

	launcher, err := sandbox.New(cfg.Sandbox.Options())
	if err != nil {
		return fmt.Errorf("start sandbox launcher: %w", err)
	}
	defer launcher.Close()
	// The cache lives under the state directory, which New makes 0711;
	// create it first so the images cache finds a searchable parent.
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return err
	}
	cache, err := images.New(images.Options{
		Dir: cfg.ImagesDir(), Platform: cfg.Images.Platform, Insecure: cfg.Images.Insecure,
		DockerConfig: cfg.Images.DockerConfig, RefreshTags: cfg.Images.RefreshTags,
		MaxBytes: int64(cfg.Images.MaxBytes), Logger: logger, Metrics: obs.reg,
		Tenants: cfg.Images.TenantCredentials(), AccessTTL: cfg.Images.AccessTTL,
	})
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
	if *httpAddr != "" {
		if _, err := obs.startHTTP(ctx, *httpAddr, nil, nil); err != nil {
			return err
		}
	}
	logger.Info("runner serving", "socket", cfg.Socket, "state", cfg.StateDir)
	// Scripts and `paddock up` may read the socket from this line.
	fmt.Printf("paddock runner listening on %s\n", cfg.Socket)
	return serveUntilDone(ctx, g, lis, obs.health.Shutdown)
}

// loadRunnerConfig reads the config file (defaults without one), applies
// the flags that override it, and validates the result.
func loadRunnerConfig(path, socket, state string, concurrency int, hide []string) (runner.Config, error) {
	cfg := runner.DefaultConfig()
	if path != "" {
		if err := configs.Load(path, &cfg); err != nil {
			return cfg, err
		}
	}
	if socket != "" {
		cfg.Socket = socket
	}
	if state != "" {
		cfg.StateDir = state
	}
	if concurrency > 0 {
		cfg.Concurrency = concurrency
	}
	cfg.HostHiddenPaths = append(cfg.HostHiddenPaths, hide...)
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("config: %w", err)
	}
	return cfg, nil
}

// stringsFlag collects a repeated flag's values, in order.
type stringsFlag []string

func (s *stringsFlag) String() string { return fmt.Sprint([]string(*s)) }

func (s *stringsFlag) Set(v string) error {
	abs, err := filepath.Abs(v)
	if err != nil {
		return err
	}
	*s = append(*s, abs)
	return nil
}
