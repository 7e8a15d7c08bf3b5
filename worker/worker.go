// Package worker runs the actions the scheduler assigns: it fetches each
// action's Action, Command and input tree from storage, builds the input
// root in a build directory by hard-linking files from its FileCache, asks
// its runner (a separate process, over api/runnerpb) to run the command in
// a sandbox, collects and uploads the outputs, writes the ActionResult to
// the action cache when it may, and reports the ExecuteResponse back. Each
// of those is a step of its own, an Executor, chained in Worker.newChain.
//
// Lifecycle: New clears build directories left by a crashed worker; Run
// connects to the scheduler through api/workerpb/workerclient (which
// registers, heartbeats, reconnects and delivers cancellations) and serves
// assignments with Execute, up to Options.Concurrency at a time. Each
// action's build directory is removed when the action ends (with
// Options.SpareDir, emptied and kept for a later action: buildDirs).
// A storage or runner that restarts is waited for (StorageDialOptions,
// RunnerClient), so that its restart delays actions rather than fails
// them.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/api/workerpb/workerclient"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/storage"
)

// Options configures a Worker.
type Options struct {
	// ID names the worker to the scheduler; it must be stable across
	// restarts so that the scheduler recognises a reconnecting worker.
	ID string
	// Concurrency is how many actions run at once.
	Concurrency int
	// Platform is what the worker offers: routing properties such as
	// OSFamily, ISA, Pool. A name may appear with several values (an
	// action asking for any of them matches). Default: DefaultPlatform().
	Platform []*workerpb.Property
	// BuildDir holds one directory per running action. It must be on the
	// same filesystem as the file cache.
	BuildDir string
	// SpareDir, if set, keeps build directories between actions: when an
	// action ends, its input root is removed and its stdout and stderr
	// files emptied, and the directory moves here, to be moved back for a
	// later action, instead of a directory and two files made and removed
	// per action (see buildDirs). The input roots' emptied directories
	// are kept for later input roots in SpareDir+".dirs" (see dirPool).
	// Both must be on BuildDir's filesystem and, like it, hidden from
	// sandboxes; the worker empties them at start.
	SpareDir string
	// OutputLimits bound each action's outputs (depth, files, bytes).
	OutputLimits OutputLimits
	// InputLimits bound each action's input root, as expanded from its
	// Directory blobs (depth, files, bytes).
	InputLimits InputLimits
	// CASBytes is the most the CAS holds, when the worker knows it (the
	// disk CAS of `paddock up`); 0: unknown. An input root whose distinct
	// files are more than that, with some missing, is RESOURCE_EXHAUSTED:
	// uploading what is missing evicts what is there, and a client that
	// does so as the spec asks (MISSING, upload, Execute again) looped.
	CASBytes int64
	// TrashDir receives build directories to be removed in the
	// background; it must be on BuildDir's filesystem. Default: BuildDir
	// with ".trash" appended.
	TrashDir string
	// CAS and AC are the storage the worker reads inputs from and writes
	// outputs and results to.
	CAS storage.BlobStore
	AC  storage.ActionCache
	// Adopter, if set, is the CAS on BuildDir's filesystem that keeps
	// output files as they are, by a hard link, instead of a copy
	// uploaded to CAS (see outputAdoption): `paddock up`'s disk CAS when
	// it is unpartitioned. Never a cache in front of another store.
	Adopter Adopter
	// Room, if set, is a store on BuildDir's disk that can give room
	// back (`paddock up`'s disk CAS): an action that found the disk full
	// asks it for room for its retry (DiskRoom).
	Room DiskRoom
	// Files is the worker's file cache.
	Files *FileCache
	// Runner runs commands in sandboxes: RunnerClient for a `paddock
	// runner` process.
	Runner Runner
	// Steps are extra steps (metrics, tracing, tenant checks), each
	// wrapping the chain inside it: the first is outermost, just inside
	// the step that turns errors into the response's status.
	Steps []func(next Executor) Executor
	// TenantOf, if set, names the tenant that owns an action's instance
	// name (the auth policy's PartitionOf's sibling, auth.Policy.TenantOf).
	// The runner is told it, to pull images with that tenant's registry
	// credentials and to check its access to a cached private image. Nil:
	// no tenant ("", the farm-wide credentials).
	TenantOf func(instance string) string
	// FetchParallelism bounds concurrent input file fetches per action.
	// Default 16.
	FetchParallelism int
	Logger           *slog.Logger
	// Clock is the clock for metadata timestamps; default the real one.
	Clock clock.Clock
	// StartPaused registers the worker paused, taking no work until
	// something (Readiness) resumes it: a worker started beside a runner
	// too old for it registered unpaused before its first probe, and the
	// action it was given at once failed INTERNAL (outside probe).
	StartPaused bool
}

// Worker executes assignments. Safe for concurrent use.
type Worker struct {
	opts     Options
	roots    *inputRootBuilder
	dirs     *buildDirs
	adoption *outputAdoption // nil: outputs are copied
	trash    *trash
	chain    Executor

	mu          sync.Mutex
	client      *workerclient.Client // set by Run
	paused      bool                 // setPaused, passed on to client
	pauseReason string
}

// Close stops the worker's background removal of build directories
// (what is left is removed at the next start). Call it after Run returns.
func (w *Worker) Close() { w.trash.close() }

// New validates opts, removes stale build directories and returns a Worker.
func New(opts Options) (*Worker, error) {
	if opts.ID == "" || opts.CAS == nil || opts.AC == nil || opts.Files == nil || opts.Runner == nil || opts.BuildDir == "" {
		return nil, errors.New("worker: ID, CAS, AC, Files, Runner and BuildDir are required")
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	if opts.FetchParallelism < 1 {
		opts.FetchParallelism = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	opts.Clock = clock.OrReal(opts.Clock)
	if opts.Platform == nil {
		opts.Platform = DefaultPlatform()
	}
	if opts.TrashDir == "" {
		opts.TrashDir = filepath.Clean(opts.BuildDir) + ".trash"
	}
	removers, maxBacklog := trashOptions(opts.Concurrency)
	trash, err := newTrash(opts.TrashDir, removers, maxBacklog, opts.Logger)
	if err != nil {
		return nil, err
	}
	// Build directories from a previous run (a crash) are stale: they go
	// to the trash, whatever they hold (a tree too deep for os.RemoveAll,
	// say), and start-up does not wait for their removal.
	trash.discard(opts.BuildDir)
	if err := os.MkdirAll(opts.BuildDir, buildDirMode); err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}
	dirs, err := newBuildDirs(opts.SpareDir, opts.Concurrency, trash)
	if err != nil {
		return nil, fmt.Errorf("spare build directories: %w", err)
	}
	adoption, err := newOutputAdoption(opts.Adopter, opts.BuildDir)
	if err != nil {
		return nil, err
	}
	w := &Worker{
		opts:     opts,
		adoption: adoption,
		roots:    &inputRootBuilder{cas: opts.CAS, files: opts.Files, dirs: newDirectoryCache(defaultDirectoryCacheBytes), pool: dirs.pool, parallelism: opts.FetchParallelism, limits: opts.InputLimits.withDefaults(), casBytes: opts.CASBytes},
		dirs:     dirs,
		trash:    trash,
	}
	if opts.StartPaused {
		w.paused, w.pauseReason = true, "starting: its runner not checked yet"
	}
	w.chain = w.newChain()
	return w, nil
}

// Run serves the scheduler reachable over conn until ctx ends.
func (w *Worker) Run(ctx context.Context, conn grpc.ClientConnInterface) error {
	reg := &workerpb.Register{WorkerId: w.opts.ID, Concurrency: int32(w.opts.Concurrency), Platform: w.opts.Platform}
	c, err := workerclient.New(workerclient.Options{Conn: conn, Register: reg, Handler: w.Execute, Logger: w.opts.Logger})
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.client = c
	c.SetPaused(w.paused, w.pauseReason)
	w.mu.Unlock()
	return c.Run(ctx)
}

// Registered reports whether the worker is registered with the scheduler
// (Run's session is established): not before Run, nor while the
// connection reaches a server that is not a scheduler, or a scheduler that
// refuses the worker.
func (w *Worker) Registered() bool {
	w.mu.Lock()
	c := w.client
	w.mu.Unlock()
	return c != nil && c.Connected()
}

// setPaused says whether the worker can run actions now (Readiness calls
// it as its runner comes and goes): while paused, the scheduler assigns it
// nothing (workerclient.Client.SetPaused). It may be called before Run.
func (w *Worker) setPaused(paused bool, reason string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.paused, w.pauseReason = paused, reason
	if w.client != nil {
		w.client.SetPaused(paused, reason)
	}
}

// DefaultPlatform is what a worker offers unless configured: this machine's
// OS family and ISA under the names and spellings Bazel toolchains and RBE
// configurations use.
func DefaultPlatform() []*workerpb.Property {
	p := []*workerpb.Property{{Name: "OSFamily", Value: "Linux"}, {Name: "OSFamily", Value: "linux"}}
	switch runtime.GOARCH {
	case "amd64":
		p = append(p, &workerpb.Property{Name: "ISA", Value: "x86-64"}, &workerpb.Property{Name: "Arch", Value: "amd64"})
	case "arm64":
		p = append(p, &workerpb.Property{Name: "ISA", Value: "aarch64"}, &workerpb.Property{Name: "Arch", Value: "arm64"})
	}
	return p
}

// Execute runs one assignment through the chain of steps (Executor) and
// returns its ExecuteResponse. Errors found before the command runs, and
// failures of the worker or runner, are in the response's status; a
// non-zero exit code is a result.
func (w *Worker) Execute(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
	j := &Job{Assignment: a, Metadata: &repb.ExecutedActionMetadata{Worker: w.opts.ID, QueuedTimestamp: a.QueuedTimestamp}}
	// Every CAS access of the action is in its instance's partition.
	ctx = storage.WithInstance(ctx, a.InstanceName)
	resp, _ := w.chain.Execute(ctx, j) // metadataStep answers every error in resp
	return resp
}

// newChain assembles the worker's steps (see Executor), outermost first.
func (w *Worker) newChain() Executor {
	o := w.opts
	var e Executor = &runStep{runner: o.Runner, clock: o.Clock, tenantOf: o.TenantOf, disk: newDiskWatch(o.BuildDir), room: o.Room, logger: o.Logger}
	e = &uploadStep{next: e, cas: o.CAS, adoption: w.adoption, limits: o.OutputLimits.withDefaults(), clock: o.Clock, checkOver: checkUploadsOver(o.CASBytes)}
	e = &cacheStep{next: e, ac: o.AC, clock: o.Clock, logger: o.Logger, stillAssigned: workerclient.StillAssigned}
	e = &inputRootStep{next: e, roots: w.roots, clock: o.Clock}
	e = &actionStep{next: e, cas: o.CAS}
	e = &buildDirStep{next: e, base: o.BuildDir, dirs: w.dirs}
	for i := len(o.Steps) - 1; i >= 0; i-- {
		e = o.Steps[i](e)
	}
	return &metadataStep{next: e, clock: o.Clock, logger: o.Logger}
}
