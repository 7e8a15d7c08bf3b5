// Package worker runs the actions the scheduler assigns: it fetches each
// action's Action, Command and input tree from storage, builds the input
// root in a build directory by hard-linking files from its FileCache, asks
// its runner (a separate process, over api/runnerpb) to run the command in
// a sandbox, collects and uploads the outputs, writes the ActionResult to
// the action cache when it may, and reports the ExecuteResponse back.
//
// Lifecycle: New clears build directories left by a crashed worker; Run
// connects to the scheduler through api/workerpb/workerclient (which
// registers, heartbeats, reconnects and delivers cancellations) and serves
// assignments with Execute, up to Options.Concurrency at a time. Each
// action's build directory is removed when the action ends (with
// Options.SpareDir, emptied and kept for a later action: buildDirs).
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/api/workerpb/workerclient"
	"github.com/paddock-build/paddock/digest"
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
	// per action (see buildDirs). It must be on BuildDir's filesystem and,
	// like it, hidden from sandboxes; the worker empties it at start.
	SpareDir string
	// CAS and AC are the storage the worker reads inputs from and writes
	// outputs and results to.
	CAS storage.BlobStore
	AC  storage.ActionCache
	// Files is the worker's file cache.
	Files *FileCache
	// Runner runs commands in sandboxes.
	Runner runnerpb.RunnerClient
	// RunnerConn, if set, is Runner's connection (a *grpc.ClientConn):
	// while it is ready, an action is sent to the runner at once, without
	// first asking it whether it is ready (a round trip per action).
	RunnerConn interface{ GetState() connectivity.State }
	// RunnerReadyTimeout is how long an action waits for a runner that is
	// not answering (restarting) before it is reported as retryable.
	// Default 30s.
	RunnerReadyTimeout time.Duration
	// FetchParallelism bounds concurrent input file fetches per action.
	// Default 16.
	FetchParallelism int
	Logger           *slog.Logger
	// Now is the clock for metadata timestamps; default time.Now.
	Now func() time.Time
}

// Worker executes assignments. Safe for concurrent use.
type Worker struct {
	opts  Options
	roots *inputRootBuilder
	dirs  *buildDirs
}

// New validates opts, removes stale build directories and returns a Worker.
func New(opts Options) (*Worker, error) {
	if opts.ID == "" || opts.CAS == nil || opts.AC == nil || opts.Files == nil || opts.Runner == nil || opts.BuildDir == "" {
		return nil, errors.New("worker: ID, CAS, AC, Files, Runner and BuildDir are required")
	}
	if opts.Concurrency < 1 {
		opts.Concurrency = 1
	}
	if opts.RunnerReadyTimeout <= 0 {
		opts.RunnerReadyTimeout = 30 * time.Second
	}
	if opts.FetchParallelism < 1 {
		opts.FetchParallelism = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Platform == nil {
		opts.Platform = DefaultPlatform()
	}
	// Build directories from a previous run (a crash) are stale.
	if err := os.RemoveAll(opts.BuildDir); err != nil {
		return nil, fmt.Errorf("clear build directories: %w", err)
	}
	if err := os.MkdirAll(opts.BuildDir, 0o711); err != nil {
		return nil, fmt.Errorf("create build directory: %w", err)
	}
	dirs, err := newBuildDirs(opts.SpareDir, opts.Concurrency)
	if err != nil {
		return nil, fmt.Errorf("spare build directories: %w", err)
	}
	return &Worker{
		opts:  opts,
		roots: &inputRootBuilder{cas: opts.CAS, files: opts.Files, dirs: newDirectoryCache(100000), parallelism: opts.FetchParallelism},
		dirs:  dirs,
	}, nil
}

// Run serves the scheduler reachable over conn until ctx ends.
func (w *Worker) Run(ctx context.Context, conn grpc.ClientConnInterface) error {
	reg := &workerpb.Register{WorkerId: w.opts.ID, Concurrency: int32(w.opts.Concurrency), Platform: w.opts.Platform}
	c, err := workerclient.New(workerclient.Options{Conn: conn, Register: reg, Handler: w.Execute})
	if err != nil {
		return err
	}
	return c.Run(ctx)
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

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// Execute runs one assignment and returns its ExecuteResponse. Errors
// found before the command runs, and failures of the worker or runner, are
// in the response's status; a non-zero exit code is a result.
func (w *Worker) Execute(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
	md := &repb.ExecutedActionMetadata{
		Worker:               w.opts.ID,
		QueuedTimestamp:      a.QueuedTimestamp,
		WorkerStartTimestamp: w.now(),
	}
	name := unsafeChars.ReplaceAllString(a.OperationName, "_")
	dir := filepath.Join(w.opts.BuildDir, fmt.Sprintf("%s-%d", name[max(0, len(name)-64):], a.Attempt))
	ran := false // set once the Run call came back: no sandbox writes in dir
	defer func() { w.dirs.done(dir, ran) }()
	resp, err := w.execute(ctx, a, md, dir, &ran)
	md.WorkerCompletedTimestamp = w.now()
	if err != nil {
		st := status.Convert(err)
		if ctx.Err() != nil {
			st = status.New(codes.Canceled, "action cancelled: "+st.Message())
		}
		w.opts.Logger.Warn("action failed", "operation", a.OperationName, "error", err)
		if resp == nil {
			resp = &repb.ExecuteResponse{}
		}
		resp.Status = st.Proto()
	}
	if resp.Result != nil {
		resp.Result.ExecutionMetadata = md
	}
	return resp
}

func (w *Worker) now() *timestamppb.Timestamp { return timestamppb.New(w.opts.Now()) }

func (w *Worker) execute(ctx context.Context, a *workerpb.Assignment, md *repb.ExecutedActionMetadata, dir string, ran *bool) (*repb.ExecuteResponse, error) {
	fn := digest.Function(a.DigestFunction)
	protoDigest := func(d *workerpb.Digest, field string) (digest.Digest, error) {
		if d == nil {
			return digest.Digest{}, status.Errorf(codes.InvalidArgument, "assignment has no %s", field)
		}
		return digest.FromProto(fn, &repb.Digest{Hash: d.Hash, SizeBytes: d.SizeBytes}, field)
	}
	actionDigest, err := protoDigest(a.ActionDigest, "action_digest")
	if err != nil {
		return nil, err
	}
	action := &repb.Action{}
	if err := storage.GetProto(ctx, w.opts.CAS, actionDigest, action, maxDirectoryBytes); err != nil {
		return nil, notFoundAsMissing(err, actionDigest)
	}
	commandDigest, err := digest.FromProto(fn, action.CommandDigest, "action.command_digest")
	if err != nil {
		return nil, err
	}
	rootDigest, err := digest.FromProto(fn, action.InputRootDigest, "action.input_root_digest")
	if err != nil {
		return nil, err
	}
	cmd := &repb.Command{}
	if err := storage.GetProto(ctx, w.opts.CAS, commandDigest, cmd, maxDirectoryBytes); err != nil {
		return nil, notFoundAsMissing(err, commandDigest)
	}
	if err := checkCommandPaths(cmd); err != nil {
		return nil, err
	}

	// Inputs.
	root, err := w.dirs.make(dir)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "create build directory: %v", err)
	}
	md.InputFetchStartTimestamp = w.now()
	if _, err := w.roots.build(ctx, fn, rootDigest, root); err != nil {
		return nil, err
	}
	rootFd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "open input root: %v", err)
	}
	defer unix.Close(rootFd)
	if err := createOutputParents(rootFd, cmd); err != nil {
		return nil, err
	}
	md.InputFetchCompletedTimestamp = w.now()

	// Run.
	req := &runnerpb.RunRequest{
		ActionId:         filepath.Base(dir),
		InputRoot:        root,
		Arguments:        cmd.Arguments,
		WorkingDirectory: cmd.WorkingDirectory,
		StdoutPath:       filepath.Join(dir, "stdout"),
		StderrPath:       filepath.Join(dir, "stderr"),
	}

	for _, e := range cmd.EnvironmentVariables {
		req.EnvironmentVariables = append(req.EnvironmentVariables, &runnerpb.EnvironmentVariable{Name: e.Name, Value: e.Value})
	}
	for _, p := range a.Platform {
		req.Platform = append(req.Platform, &runnerpb.Property{Name: p.Name, Value: p.Value})
	}
	if a.Timeout != nil {
		req.Timeout = a.Timeout
	} else if action.Timeout != nil {
		req.Timeout = action.Timeout
	}
	// A runner that is restarting (it crashed, or was upgraded) gets a
	// moment to come back before the action is given up as retryable.
	if w.opts.RunnerConn == nil || w.opts.RunnerConn.GetState() != connectivity.Ready {
		rctx, cancel := context.WithTimeout(ctx, w.opts.RunnerReadyTimeout)
		_, err = w.opts.Runner.CheckReadiness(rctx, &runnerpb.CheckReadinessRequest{}, grpc.WaitForReady(true))
		cancel()
		if err != nil && ctx.Err() == nil {
			return nil, status.Errorf(codes.Unavailable, "runner not ready, the action may be retried: %v", err)
		}
	}
	md.ExecutionStartTimestamp = w.now()
	run, err := w.opts.Runner.Run(ctx, req, grpc.WaitForReady(true))
	md.ExecutionCompletedTimestamp = w.now()
	*ran = err == nil
	if err != nil {
		if ctx.Err() != nil {
			return nil, status.Error(codes.Canceled, "action cancelled")
		}
		// The runner itself failed (crashed, restarted): say so in a way
		// clients treat as retryable.
		return nil, status.Errorf(codes.Unavailable, "runner failed, the action may be retried: %v", err)
	}
	if run.ExecutionStart != nil {
		md.ExecutionStartTimestamp = run.ExecutionStart
	}
	if run.ExecutionCompleted != nil {
		md.ExecutionCompletedTimestamp = run.ExecutionCompleted
	}
	runStatus := status.New(codes.Code(run.StatusCode), run.StatusMessage)
	switch runStatus.Code() {
	case codes.OK, codes.DeadlineExceeded:
	default:
		return nil, runStatus.Err()
	}
	truncated := run.StdoutTruncated || run.StderrTruncated
	if truncated && diskFull(dir) {
		// The sandbox could not write the command's output: the result
		// would be silently wrong. Fail it, and cache nothing.
		return nil, status.Errorf(codes.ResourceExhausted, "the worker's build directory %s is full: the action's output was lost", w.opts.BuildDir)
	}
	if run.Usage != nil {
		if u, err := anypb.New(run.Usage); err == nil {
			md.AuxiliaryMetadata = append(md.AuxiliaryMetadata, u)
		}
	}

	// Outputs.
	md.OutputUploadStartTimestamp = w.now()
	result := &repb.ActionResult{ExitCode: run.ExitCode}
	oc := &outputCollector{cas: w.opts.CAS, fn: fn, rootFd: rootFd}
	if err := oc.collect(ctx, cmd, result); err != nil {
		return nil, err
	}
	for _, s := range []struct {
		file string
		out  **repb.Digest
	}{{req.StdoutPath, &result.StdoutDigest}, {req.StderrPath, &result.StderrDigest}} {
		b, err := os.ReadFile(s.file)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, status.Errorf(codes.Internal, "read output stream: %v", err)
		}
		d, err := oc.uploadBytes(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("upload stdout/stderr: %w", err)
		}
		*s.out = d.Proto()
	}
	if err := oc.flush(ctx); err != nil {
		return nil, err
	}
	md.OutputUploadCompletedTimestamp = w.now()
	result.ExecutionMetadata = md

	resp := &repb.ExecuteResponse{Result: result, Status: runStatus.Proto()}
	if runStatus.Code() == codes.DeadlineExceeded {
		resp.Message = fmt.Sprintf("action timed out after %s", req.Timeout.AsDuration())
		return resp, nil
	}
	if truncated {
		// Over the output cap: the client gets what was kept, but an
		// incomplete result must not be served to others from the cache.
		resp.Message = "stdout or stderr exceeded the worker's output cap and was truncated; the result was not cached"
		return resp, nil
	}
	if result.ExitCode == 0 && !action.DoNotCache && !a.DoNotCache {
		if err := w.opts.AC.Put(ctx, a.InstanceName, actionDigest, result); err != nil {
			// The result stands; only caching it failed.
			w.opts.Logger.Warn("write action cache", "action", actionDigest.String(), "error", err)
		}
	}
	return resp, nil
}

// diskFull reports whether the filesystem holding dir has no space left for
// an unprivileged writer.
func diskFull(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Bavail*uint64(st.Bsize) < 64<<10
}

// notFoundAsMissing turns NOT_FOUND for an Action or Command into the
// FAILED_PRECONDITION/MISSING answer clients act on.
func notFoundAsMissing(err error, d digest.Digest) error {
	if status.Code(err) == codes.NotFound {
		return missingBlobs([]digest.Digest{d})
	}
	return err
}

// checkCommandPaths refuses paths that are not clean and relative; the
// scheduler validates them too, but the worker builds directories from
// them and must not trust its caller.
func checkCommandPaths(cmd *repb.Command) error {
	check := func(field, p string) error {
		if p == "" || strings.HasPrefix(p, "/") || path.Clean(p) != p || p == ".." || strings.HasPrefix(p, "../") {
			return status.Errorf(codes.InvalidArgument, "%s %q is not a clean relative path inside the input root", field, p)
		}
		return nil
	}
	if cmd.WorkingDirectory != "" {
		if err := check("command.working_directory", cmd.WorkingDirectory); err != nil {
			return err
		}
	}
	for _, list := range [][]string{cmd.OutputPaths, cmd.OutputFiles, cmd.OutputDirectories} {
		for _, p := range list {
			full := path.Join(cmd.WorkingDirectory, p)
			if err := check("output path", full); err != nil {
				return err
			}
		}
	}
	if len(cmd.Arguments) == 0 {
		return status.Error(codes.InvalidArgument, "command.arguments is empty")
	}
	return nil
}

// createOutputParents creates the parent directories of every declared
// output (REv2 2.0 clients rely on it), and the working directory, one
// component at a time with mkdirat/openat(O_NOFOLLOW): a symlink in the
// input root (say link -> ../../../../etc) stops the walk instead of
// being followed, so nothing is created outside the input root.
func createOutputParents(rootFd int, cmd *repb.Command) error {
	dirs := []string{}
	if cmd.WorkingDirectory != "" {
		dirs = append(dirs, cmd.WorkingDirectory)
	}
	for _, list := range [][]string{cmd.OutputPaths, cmd.OutputFiles, cmd.OutputDirectories} {
		for _, p := range list {
			if parent := path.Dir(path.Join(cmd.WorkingDirectory, p)); parent != "." {
				dirs = append(dirs, parent)
			}
		}
	}
	for _, d := range dirs {
		if err := mkdirAllBeneath(rootFd, d); err != nil {
			return status.Errorf(codes.Internal, "create output directory %q: %v", d, err)
		}
	}
	return nil
}

func mkdirAllBeneath(rootFd int, rel string) error {
	fd, err := unix.Dup(rootFd)
	if err != nil {
		return err
	}
	for _, c := range strings.Split(rel, "/") {
		err := unix.Mkdirat(fd, c, 0o755)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			unix.Close(fd)
			return err
		}
		next, err := unix.Openat(fd, c, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENOTDIR) {
			// A symlink or a file is in the way: leave it to the action.
			return nil
		}
		if err != nil {
			return err
		}
		fd = next
	}
	return unix.Close(fd)
}
