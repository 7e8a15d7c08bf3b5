package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/api/workerpb/workerclient"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/runner"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

const workerUsage = `usage: paddock worker --scheduler ADDR --storage ADDR --runner SOCKET --dir DIR [flags]
       paddock worker --config FILE [flags]

Pulls actions from the scheduler, builds their input roots under DIR (from a
file cache on the same filesystem), runs them through the runner listening on
SOCKET (start it with 'paddock runner'), and uploads their outputs.
`

func runWorker(ctx context.Context, args []string) error {
	cfg, err := loadRoleConfig(args, configs.DefaultWorker)
	if err != nil {
		return err
	}
	fs, rf := newRoleFlagSet("worker", workerUsage, "configs/worker.yaml")
	registerWorkerFlags(fs, &cfg)
	fs.StringVar(&cfg.Scheduler, "scheduler", cfg.Scheduler, "scheduler address (host:port); required (scheduler)")
	fs.StringVar(&cfg.Storage, "storage", cfg.Storage, "REv2 storage address (host:port); required (storage)")
	fs.StringVar(&cfg.Runner, "runner", cfg.Runner, "UNIX socket of the runner; required (runner)")
	fs.StringVar(&cfg.Dir, "dir", cfg.Dir, "worker directory (file cache and build directories); required (dir)")
	fs.StringVar(&cfg.ID, "id", cfg.ID, "worker id (default: the host name) (id)")
	byteSizeFlag(fs, &cfg.CacheSize, "cache-size", "size bound of the file cache (cache_size)")
	fs.Var(&platformFlag{dst: &cfg.Platform}, "platform", "routing property NAME=VALUE this worker offers (repeatable, replaces the config's list; default: OSFamily and ISA of this machine) (platform)")
	var dial dialSecurity // to the scheduler and storage
	dial.register(fs)
	fs.BoolVar(&cfg.FileCachePerInstance, "file-cache-per-instance", cfg.FileCachePerInstance, "keep cached input files apart per instance name, so no hard link crosses tenants' CAS partitions (for farms with an auth policy) (file_cache_per_instance)")
	policyFile := fs.String("auth", "", "the farm's auth policy file: keeps cached input files apart per CAS partition, and names each action's tenant to the runner (for per-tenant registry credentials) when the scheduler is too old to say")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.CheckCounts(); err != nil { // printed configs too: required keys may wait
		return fmt.Errorf("config: %w", err)
	}
	if rf.print {
		return printConfig(os.Stdout, cfg, workerNotes(cfg, thisMachine(), ""))
	}
	if err := cfg.Validate(); err != nil {
		fs.Usage()
		return err
	}
	if cfg.ID == "" {
		cfg.ID, _ = os.Hostname()
	}
	// The runner takes absolute paths only (each action's input root is
	// under it): with a relative --dir the worker started, said it was
	// ready, and every action failed with INVALID_ARGUMENT.
	if abs, err := filepath.Abs(cfg.Dir); err == nil { // fails only without a working directory, as the lock would
		cfg.Dir = abs
	}
	logger, err := rf.setup()
	if err != nil {
		return err
	}
	defer watchStop(ctx, logger, "worker")()
	unlock, err := lockRoleDir(cfg.Dir, "worker directory")
	if err != nil {
		return err
	}
	defer unlock()
	var policy *auth.Policy
	if *policyFile != "" {
		if policy, err = auth.LoadPolicy(*policyFile); err != nil {
			return err
		}
	}
	files := filePartitions(policy, cfg.FileCachePerInstance)
	dialOpts, err := dial.dialOptions(logger)
	if err != nil {
		return err
	}
	// Calls to storage wait for it through a restart, as actions wait for
	// a restarting runner, rather than fail every action at once.
	storageDial := append(slices.Clip(dialOpts), worker.StorageDialOptions(worker.StorageWaitOptions{Logger: logger})...)
	cas, ac, storageConn, err := openRemoteStorage(ctx, cfg.Storage, storageDial)
	if err != nil {
		return err
	}
	defer storageConn.Close()
	obs := newObservability(logger)
	if err := rf.startHTTP(ctx, "worker", obs, nil, nil); err != nil {
		return err
	}
	return serveWorker(ctx, workerSetup{
		cfg: cfg, platform: properties(cfg.Platform), schedulerAddr: cfg.Scheduler, schedulerDial: dialOpts, runnerSocket: cfg.Runner,
		cas: cas, ac: ac, storageConn: storageConn, logger: logger, partitionOf: files, tenantOf: tenantOf(policy),
		obs: obs, healthService: "",
	})
}

// workerSetup is what `paddock worker` and `paddock up` share.
type workerSetup struct {
	// cfg gives the id, directory, concurrency, file cache size and
	// limits; the addresses are the fields below.
	cfg           configs.Worker
	platform      []*workerpb.Property
	schedulerAddr string
	runnerSocket  string
	cas           storage.BlobStore
	ac            storage.ActionCache
	local         worker.LocalBlobs            // the CAS on this disk, in `paddock up`
	casBytes      int64                        // the most that CAS holds; 0: unknown
	adopt         worker.Adopter               // the same, when it keeps outputs by a hard link
	room          worker.DiskRoom              // the same, partitioned or not, to give room back; nil: none
	storageConn   *grpc.ClientConn             // to a storage elsewhere (the worker role); nil in `paddock up`
	partitionOf   func(instance string) string // file cache apart per CAS partition; nil: shared
	tenantOf      func(instance string) string // the tenant the runner is told; nil: none
	schedulerDial []grpc.DialOption            // credentials to the scheduler; plaintext when empty
	logger        *slog.Logger
	obs           *observability
	// healthService is the health service name that follows the worker's
	// readiness ("" for the worker role, workerHealthService in `up`).
	healthService string
}

// workerHealthService is the gRPC health service name of the worker in
// `paddock up`, where "" stands for the whole farm's endpoint.
const workerHealthService = "paddock.worker"

func serveWorker(ctx context.Context, ws workerSetup) error {
	files, err := worker.NewFileCache(worker.FileCacheOptions{
		Dir: filepath.Join(ws.cfg.Dir, "files"), MaxBytes: int64(ws.cfg.CacheSize), CAS: ws.cas, Local: ws.local, PartitionOf: ws.partitionOf,
	})
	if err != nil {
		return err
	}
	metrics := worker.NewMetrics(files)
	ws.obs.reg.MustRegister(metrics)
	runnerConn, err := runner.DialConn(ws.runnerSocket)
	if err != nil {
		return err
	}
	defer runnerConn.Close()
	w, err := worker.New(worker.Options{
		StartPaused: true, // until the readiness probe below has seen its runner
		ID:          ws.cfg.ID, Concurrency: ws.cfg.Concurrency, Platform: ws.platform,
		BuildDir: filepath.Join(ws.cfg.Dir, "builds"), SpareDir: filepath.Join(ws.cfg.Dir, "spare"), CAS: ws.cas, AC: ws.ac, Adopter: ws.adopt, Room: ws.room, Files: files,
		Runner: worker.RunnerClient(runnerConn, 0), TenantOf: ws.tenantOf, Logger: ws.logger, Steps: []func(worker.Executor) worker.Executor{metrics.Step},
		InputLimits: ws.cfg.InputLimits(), OutputLimits: ws.cfg.OutputLimits(), CASBytes: ws.casBytes,
	})
	if err != nil {
		return err
	}
	dial := ws.schedulerDial
	if len(dial) == 0 {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	schedConn, err := grpc.NewClient(ws.schedulerAddr, append(workerclient.DialOptions(), dial...)...)
	if err != nil {
		return fmt.Errorf("scheduler %s: %w", ws.schedulerAddr, err)
	}
	defer schedConn.Close()
	ws.logger.Info("worker running", "id", ws.cfg.ID, "scheduler", ws.schedulerAddr, "runner", ws.runnerSocket, "concurrency", ws.cfg.Concurrency)
	defer w.Close()
	ws.obs.setServing(ws.healthService, false)
	// Readiness pauses the worker (it takes no new work) while its runner
	// or its storage is down, and is not SERVING until it has registered.
	probe := worker.Readiness{Runner: runnerpb.NewRunnerClient(runnerConn), RunnerConn: runnerConn, Scheduler: schedConn, Worker: w}
	if ws.storageConn != nil { // a nil *ClientConn in the interface would not be nil
		probe.Storage = ws.storageConn
	}
	go probe.Run(ctx, func(ready bool, why string) {
		ws.obs.setServing(ws.healthService, ready)
		if ready {
			ws.logger.Info("worker ready")
		} else {
			ws.logger.Warn("worker not ready", "reason", why)
		}
	})
	err = w.Run(ctx, schedConn)
	if ctx.Err() != nil {
		return nil // stopped (Ctrl-C): the client gave back what it held
	}
	return err
}

// filePartitions is how a worker (of the worker role or of up) keeps its
// file cache apart: per instance name when its config asks (finer than
// the partitions), else per CAS partition of the policy (nil: shared).
func filePartitions(policy *auth.Policy, perInstanceName bool) func(string) string {
	if perInstanceName {
		return perInstance(true)
	}
	return partitionOf(policy)
}

// perInstance keys the file cache by instance name when on: finer than the
// storage's partitions, which a worker without the policy cannot know.
func perInstance(on bool) func(string) string {
	if !on {
		return nil
	}
	return func(instance string) string { return "instance:" + instance }
}

// properties is the platform in the worker package's form; nil (the
// machine's default) when empty.
func properties(ps []configs.Property) []*workerpb.Property {
	var out []*workerpb.Property
	for _, p := range ps {
		out = append(out, &workerpb.Property{Name: p.Name, Value: p.Value})
	}
	return out
}
