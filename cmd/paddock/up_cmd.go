package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/dirlock"
	"github.com/paddock-build/paddock/runner"
	"github.com/paddock-build/paddock/scheduler"
)

const upUsage = `usage: paddock up [--config FILE] [--data DIR] [--listen ADDR] [flags]

Runs the whole farm on this machine: storage, scheduler and a worker in this
process, and the runner (which starts the sandboxes; it needs root) as a child
process. Everything lives under DIR; a restart keeps the cache. Ctrl-C stops
it all. --config takes a file with storage, scheduler, worker and runner
sections (see configs/up.yaml); flags override it.
`

func runUp(ctx context.Context, args []string) error {
	cfg, err := loadUpConfig(args)
	if err != nil {
		return err
	}
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, upUsage); fs.PrintDefaults() }
	var cf configFlags
	cf.register(fs, "configs/up.yaml")
	registerUpFlags(fs, &cfg)
	pprofAddr := fs.String("pprof-listen", "", pprofFlagUsage+"; the runner child then serves its own on the same host, port 0 (both addresses are logged)")
	httpAddr := fs.String("http-listen", "127.0.0.1:8990", httpListenUsage+"; the runner child's metrics are served here too")
	logs := newLogFlags(fs)
	sec := newServerSecurity(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := resolveUpConfig(&cfg); err != nil {
		return err
	}
	if cf.print {
		return printConfig(os.Stdout, cfg, upNotes(cfg, thisMachine()))
	}
	if err := checkPortsFree(upPorts(cfg, fs, *httpAddr)...); err != nil {
		return err
	}
	if cfg.Data, err = prepareDataDir(cfg.Data); err != nil {
		return err
	}
	unlock, err := lockUpDirs(cfg)
	if err != nil {
		return err
	}
	defer unlock()
	logger, err := logs.newLogger(os.Stderr)
	if err != nil {
		return err
	}
	defer watchStop(ctx, logger, "paddock")()
	if *pprofAddr != "" {
		if _, err := startPprof(*pprofAddr, logger); err != nil {
			return err
		}
	}

	ep, err := startUpEndpoint(cfg, *sec, logger)
	if err != nil {
		return err
	}
	defer ep.close()
	stops := newStopOrder(ctx)
	defer stops.close()
	served := ep.serve(stops.farm, stops.stopFarm)
	sock, runnerDone, err := startRunnerChild(stops.farm, cfg, *pprofAddr, *logs, ep.obs, logger)
	if err != nil {
		return err
	}
	addr := ep.lis.Addr().String()
	statusURL, err := ep.startHTTP(stops.farm, *httpAddr, flagSet(fs, "http-listen"))
	if err != nil {
		return err
	}
	printUpBanner(os.Stdout, addr, cfg.Data, statusURL, sec.tls.Cert != "", sec.policy != "")
	if stops.workerMayRun() {
		err = serveWorker(stops.work, workerSetup{
			cfg: cfg.Worker, platform: properties(cfg.Worker.Platform),
			schedulerAddr: "unix://" + filepath.Join(cfg.Data, "scheduler.sock"), runnerSocket: sock, cas: ep.cas, ac: ep.ac, local: ep.local, adopt: ep.adopt, casBytes: ep.casBytes, logger: logger,
			room: diskRoomFor(ep.cas, cfg.Storage.Dir, cfg.Worker.Dir), partitionOf: filePartitions(ep.policy, cfg.Worker.FileCachePerInstance), tenantOf: tenantOf(ep.policy), obs: ep.obs, healthService: workerHealthService,
		})
	}
	stops.stopFarm()
	<-runnerDone
	if serveErr := <-served; serveErr != nil {
		return fmt.Errorf("serve: %w", serveErr)
	}
	if err != nil && ctx.Err() == nil { // the worker failed, not a stop
		return fmt.Errorf("worker: %w", err)
	}
	return nil
}

// upPorts are the addresses up must be able to listen on: its gRPC one,
// and the HTTP one when given (the default one only warns when taken).
func upPorts(cfg configs.Up, fs *flag.FlagSet, httpAddr string) []namedAddr {
	grpcAddr := namedAddr{cfg.Storage.Listen, "--listen (storage.listen)"}
	if flagSet(fs, "http-listen") && httpAddr != "" {
		return []namedAddr{grpcAddr, {httpAddr, "--http-listen"}}
	}
	return []namedAddr{grpcAddr}
}

// registerUpFlags adds up's flags that set its config to fs, each
// writing into cfg.
func registerUpFlags(fs *flag.FlagSet, cfg *configs.Up) {
	fs.StringVar(&cfg.Data, "data", cfg.Data, "directory for all of the farm's data (data)")
	fs.StringVar(&cfg.Storage.Listen, "listen", cfg.Storage.Listen, "gRPC address for clients (REv2) and the worker protocol (storage.listen)")
	byteSizeFlag(fs, &cfg.Storage.MaxBytes, "cas-size", "size bound of the CAS (storage.max_bytes)")
	byteSizeFlag(fs, &cfg.Worker.CacheSize, "file-cache-size", "size bound of the worker's copies of executable inputs (worker.cache_size)")
	fs.String("runner-config", "", "a runner config file (see configs/runner.yaml), loaded over the runner section of --config")
	fs.String("storage-config", "", "a storage config file (see configs/storage.yaml): its backend (or remote) replaces the storage section's")
	assetFlags(fs, &cfg.Storage.Assets)
	registerWorkerFlags(fs, &cfg.Worker)
}

// resolveUpConfig makes the data directory absolute, derives up's layout
// from it (configs.Up.Resolve) and validates the sections the packages
// check. An empty data directory (`data: ""`, `--data ""`) is the default
// one, as configs/up.yaml says, not the current directory, which
// filepath.Abs would make of it.
func resolveUpConfig(cfg *configs.Up) error {
	if cfg.Data == "" {
		cfg.Data = defaultDataDir()
	}
	var err error
	if cfg.Data, err = filepath.Abs(cfg.Data); err != nil {
		return err
	}
	if err := cfg.Resolve(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if err := cfg.Scheduler.Config().Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	// The worker's first: up gives its concurrency to the runner too.
	if err := cfg.Worker.CheckCounts(); err != nil {
		return fmt.Errorf("config: worker: %w", err)
	}
	rc := cfg.Runner.Config()
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("config: runner: %w", err)
	}
	return nil
}

// loadUpConfig is up's defaults (data under defaultDataDir), then the
// --config file, then the files of
// --runner-config (over the runner section) and --storage-config (its
// backend only, as before the sections existed).
func loadUpConfig(args []string) (configs.Up, error) {
	cfg, err := loadRoleConfig(args, func() configs.Up { return configs.DefaultUp(defaultDataDir()) })
	if err != nil {
		return cfg, err
	}
	if path := flagArg(args, "runner-config"); path != "" && !helpAsked(args) {
		if err := configs.Load(path, &cfg.Runner); err != nil {
			return cfg, err
		}
	}
	if path := flagArg(args, "storage-config"); path != "" && !helpAsked(args) {
		st := configs.DefaultStorage()
		if err := configs.Load(path, &st); err != nil {
			return cfg, err
		}
		if st.Backend != nil || st.Remote.Endpoint != "" {
			b, err := storageBackend(st)
			if err != nil {
				return cfg, err
			}
			cfg.Storage.Backend, cfg.Storage.Remote = &b, configs.RemoteStorage{}
		}
	}
	return cfg, nil
}

// printUpBanner tells the user the farm is up and how to use it. Its first
// line is also what tests and scripts wait for and read the address from.
func printUpBanner(w io.Writer, addr, data, statusURL string, tls, policy bool) {
	scheme, extra := "grpc", ""
	if tls {
		// Bazel speaks TLS only to grpcs://, verifying the farm's
		// certificate against the CA it is given.
		scheme, extra = "grpcs", " --tls_certificate=CA.pem"
	}
	if policy {
		extra += ` --remote_header=authorization="Bearer $TOKEN"`
	}
	fmt.Fprintf(w, `paddock is up: storage, scheduler and worker on %s, data in %s%s

Use it from Bazel with:
  --remote_executor=%s://%s --spawn_strategy=remote --noremote_local_fallback%s
or as a remote cache only:
  --remote_cache=%s://%s%s
`, addr, data, statusURL, scheme, addr, extra, scheme, addr, extra)
}

// lockUpDirs locks the data directory and each role's directory in it (or
// wherever the config put them), as the separate roles lock theirs: a
// `paddock storage` or `paddock scheduler` started on up's storage or
// journal directory would clear the live CAS's unfinished writes or
// replay and write the live journal.
func lockUpDirs(cfg configs.Up) (release func(), err error) {
	var held []func()
	release = func() {
		for _, r := range held {
			r()
		}
	}
	r, err := dirlock.Lock(cfg.Data, "data directory")
	if err != nil {
		return nil, err
	}
	held = append(held, r)
	dirs := []struct{ dir, what string }{{cfg.Scheduler.JournalDir, "journal directory"}, {cfg.Worker.Dir, "worker directory"}}
	// The storage directory only when the CAS is on disk there: with S3
	// or a remote backend up makes none.
	if b, err := storageBackend(cfg.Storage); err == nil && b.Disk != nil {
		dirs = append(dirs, struct{ dir, what string }{b.Disk.Dir, "storage directory"})
	}
	for _, d := range dirs {
		r, err := lockRoleDir(d.dir, d.what)
		if err != nil {
			release()
			return nil, err
		}
		held = append(held, r)
	}
	return release, nil
}

// defaultDataDir is /var/lib/paddock for root (whose home is usually 0700,
// which the sandboxes' unprivileged uids cannot cross) and ~/.cache/paddock
// otherwise.
func defaultDataDir() string {
	if os.Geteuid() == 0 {
		return "/var/lib/paddock"
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "paddock")
}

// prepareDataDir makes the data directory's path absolute, checks that
// the sandboxes' users can reach it, and creates it: checked first, a
// data directory that could never work is not left behind.
func prepareDataDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if err := checkSearchable(abs); err != nil {
		return "", err
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return "", err
	}
	return abs, checkSearchable(abs) // the umask may have taken o+x
}

// checkSearchable refuses a data directory that some ancestor hides from
// other users: the input roots under it are bind-mounted into sandboxes
// whose uids are unprivileged, and every action would fail to mount them.
func checkSearchable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		info, err := os.Stat(d)
		if (errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)) && d != filepath.Dir(d) {
			continue // made later, mode 0755; or under a file, which the loop finds
		}
		if err != nil {
			return err
		}
		if !info.IsDir() {
			return fmt.Errorf("data directory %s: %s is not a directory; choose another --data", dir, d)
		}
		if info.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("data directory %s is inside %s (mode %04o), which the sandboxes' unprivileged users cannot search; choose another --data (e.g. /var/lib/paddock) or chmod o+x %s",
				dir, d, info.Mode().Perm(), d)
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// executionCapabilities is what `paddock up` advertises for execution.
func executionCapabilities() *repb.ExecutionCapabilities {
	return &repb.ExecutionCapabilities{
		DigestFunction:  repb.DigestFunction_SHA256,
		DigestFunctions: append([]repb.DigestFunction_Value(nil), digest.Supported...),
		ExecEnabled:     true,
		ExecutionPriorityCapabilities: &repb.PriorityCapabilities{
			Priorities: []*repb.PriorityCapabilities_PriorityRange{{MinPriority: scheduler.MinPriority, MaxPriority: scheduler.MaxPriority}},
		},
	}
}

// superviseChild runs this binary with args until ctx ends, restarting it
// when it exits. The returned channel closes once the last child is gone.
// The child gets SIGTERM when ctx ends (and SIGKILL if this process dies).
func superviseChild(ctx context.Context, logger *slog.Logger, args []string) <-chan struct{} {
	done := make(chan struct{})
	exe, err := os.Executable()
	if err != nil {
		exe = "/proc/self/exe"
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			cmd := exec.Command(exe, args...)
			// The child's stdout is not kept: it holds only the banner
			// scripts read from a role started alone ("paddock runner
			// listening on …"), which the child logs too; copied to
			// stderr it was the one line there not in --log-format.
			cmd.Stderr = os.Stderr
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			if err := cmd.Start(); err != nil {
				logger.Error("start child", "args", args, "error", err)
				return
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			select {
			case err := <-exited:
				logger.Warn("child exited; restarting", "args", args[0], "error", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			case <-ctx.Done():
				_ = cmd.Process.Signal(syscall.SIGTERM) // fails only if it has exited: exited says so
				select {
				case <-exited:
				case <-time.After(10 * time.Second):
					_ = cmd.Process.Kill() // as above
					<-exited
				}
			}
		}
	}()
	return done
}

// waitRunnerReady waits until the runner on sock answers CheckReadiness,
// for at most limit.
func waitRunnerReady(ctx context.Context, sock string, limit time.Duration) error {
	client, closer, err := runner.Dial(sock)
	if err != nil {
		return err
	}
	defer closer.Close()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	if _, err := runner.WaitReady(ctx, client); err != nil {
		return fmt.Errorf("runner on %s not ready after %s: %w", sock, limit, err)
	}
	return nil
}

// flagSet reports whether the command line set the flag name.
func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}
