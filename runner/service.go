package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/images"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/sandbox"
)

// Options configure a Service.
type Options struct {
	// Config is the runner's configuration; New validates it.
	Config Config
	// Launcher runs the sandboxes. The caller owns it and closes it after
	// the Service is done.
	Launcher *sandbox.Launcher
	// Images resolves container-image values. Nil refuses actions that
	// name an image with FAILED_PRECONDITION. The caller owns it.
	Images *images.Cache
	// Logger receives one line per action; nil discards.
	Logger *slog.Logger
	// Version is reported by CheckReadiness.
	Version string
	// Clock is the clock for the execution timestamps; nil means the
	// real clock.
	Clock clock.Clock
}

// Service is the Runner gRPC service: each Run turns a request into a
// bundle, runs it in a sandbox, and reports how it ended. It is safe for
// concurrent use; up to Config.MaxSandboxes Runs proceed at once.
type Service struct {
	runnerpb.UnimplementedRunnerServer

	cfg      Config
	launcher *sandbox.Launcher
	images   *images.Cache
	logger   *slog.Logger
	version  string
	clock    clock.Clock

	slots   *idSlots
	bundles string   // <state>/bundles: one directory per id slot
	hidden  []string // host paths no host-root sandbox sees
	roots   *skeletons
	views   *hostViews
	hosts   string // <state>/hosts: image sandboxes' /etc/hosts (hosts_file.go)
}

// New prepares the state directory (removing the bundles and host-root
// skeletons a previous runner left) and returns the service.
func New(opts Options) (*Service, error) {
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return nil, fmt.Errorf("runner: host memory: %w", err)
	}
	cfg = cfg.WithHostLimits(int64(si.Totalram)*int64(si.Unit), runtime.NumCPU())
	if opts.Launcher == nil {
		return nil, errors.New("runner: Options.Launcher is required")
	}
	// 0711: sandbox uids search through to their bundle's rootfs, and
	// cannot list the other bundles.
	if err := os.MkdirAll(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("runner: state dir: %w", err)
	}
	if err := os.Chmod(cfg.StateDir, 0o711); err != nil {
		return nil, fmt.Errorf("runner: state dir: %w", err)
	}
	bundles := filepath.Join(cfg.StateDir, "bundles")
	rootfs := filepath.Join(cfg.StateDir, "rootfs")
	for _, d := range []string{bundles, rootfs} {
		if err := os.RemoveAll(d); err != nil {
			return nil, fmt.Errorf("runner: remove stale %s: %w", d, err)
		}
		if err := os.Mkdir(d, 0o711); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}
	for i := 0; i < cfg.MaxSandboxes; i++ {
		if err := os.Mkdir(filepath.Join(bundles, strconv.Itoa(i)), 0o711); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	auth.WarnIfReadableByAll(opts.Logger, "images.docker_config", cfg.Images.DockerConfig)
	for t, tc := range cfg.Images.Tenants {
		auth.WarnIfReadableByAll(opts.Logger, "images.tenants."+t+".docker_config", tc.DockerConfig)
	}
	warnWithoutOOMFloor(opts.Logger)
	hosts, err := writeHostsFile(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	opts.Clock = clock.OrReal(opts.Clock)
	hidden := resolvedHiddenPaths(hiddenPathsOf(cfg))
	roots := newSkeletons(rootfs)
	return &Service{
		cfg: cfg, launcher: opts.Launcher, images: opts.Images, logger: opts.Logger,
		version: opts.Version, clock: opts.Clock,
		slots:   newIDSlots(cfg.IDBase, cfg.MaxSandboxes),
		bundles: bundles,
		hidden:  hidden,
		roots:   roots,
		views:   newHostViews(osLister{}, hidden, roots, defaultMountPoints()),
		hosts:   hosts,
	}, nil
}

// Register adds the service to g.
func (s *Service) Register(g *grpc.Server) { runnerpb.RegisterRunnerServer(g, s) }

// CheckReadiness answers as soon as the service exists: New has prepared
// the state directory and the caller has started the launcher.
func (s *Service) CheckReadiness(context.Context, *runnerpb.CheckReadinessRequest) (*runnerpb.CheckReadinessResponse, error) {
	return &runnerpb.CheckReadinessResponse{Version: s.version, TakesActionDir: true}, nil
}

// Run runs one action. Every outcome is in the response (status_code and
// status_message); the RPC itself fails only if the call is cancelled
// before the answer can be sent.
func (s *Service) Run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	resp, err := s.run(ctx, req)
	if vanishedMountSource(err) && ctx.Err() == nil {
		// A host directory in the host-root view went away between the
		// plan's check and the mount (a temporary directory beside the
		// data directory, say): plan again once. Nothing ran yet.
		s.views.forget()
		resp, err = s.run(ctx, req)
	}
	if cause, ok := diskFullCause(err); ok {
		// The client hears which step; the operator, which path.
		s.logger.Warn("the disk is full", "action", req.GetActionId(), "error", cause)
	}
	if err != nil {
		st := status.Convert(err)
		if ctx.Err() != nil {
			// Whatever failed is no failure of its own: a set-up cut
			// short by the cancellation, or by the worker, which
			// removes an abandoned action's directory at once (its
			// input root, its output files).
			s.logger.Debug("a cancelled run's set-up stopped", "action", req.GetActionId(), "error", err)
			st = status.New(codes.Canceled, "run cancelled")
		}
		resp = &runnerpb.RunResponse{
			StatusCode: int32(st.Code()), StatusMessage: st.Message(),
			Cancelled: st.Code() == codes.Canceled, TimedOut: st.Code() == codes.DeadlineExceeded,
		}
	}
	s.logger.Info("action", "id", req.GetActionId(), "status", codes.Code(resp.StatusCode).String(),
		"message", resp.StatusMessage, "exit", resp.ExitCode, "signal", resp.Signal,
		"timed_out", resp.TimedOut, "oom", resp.OomKilled, "pids_limit", resp.PidsLimitHit)
	return resp, nil
}

// vanishedMountSource reports a sandbox set-up that failed because a bind
// mount's source no longer exists.
func vanishedMountSource(err error) bool {
	return errors.Is(err, sandbox.ErrMountSourceMissing)
}

// resolveRootfs sets in's root filesystem: the image's (pulled if need
// be, held until release is called) or the host view for the input root
// path irp. It returns the image's user and the id database that user
// names are resolved in. An image is pulled by deadline (the action's
// timeout, from when the runner got it; zero: none).
func (s *Service) resolveRootfs(ctx context.Context, req *runnerpb.RunRequest, plat platform, irp string, deadline time.Time, in *specInput) (imageUser string, db idDB, release func(), err error) {
	release = func() {}
	if plat.ImageRef == nil {
		if !s.underHidden(req.GetInputRoot()) {
			// The worker's setup, not the action, is at fault: UNAVAILABLE,
			// which the scheduler retries on another worker (avoiding this
			// one) and clients retry. FAILED_PRECONDITION, which Bazel does
			// not retry, failed whatever action one misconfigured worker
			// of a pool was given.
			return "", nil, release, status.Errorf(codes.Unavailable,
				"this worker is misconfigured: its input root %s is not below any of its runner's host_hidden_paths, so a sandbox on the host's root would see the other actions' input roots (add the worker's build directory to host_hidden_paths); the action may run on another worker", req.GetInputRoot())
		}
		view, rootfs, done, err := s.views.get(irp)
		if err != nil {
			return "", nil, release, err
		}
		in.Rootfs, in.HostBinds = rootfs, view.Binds
		return "", fileIDDB{rootfs: "/"}, done, nil
	}
	rf, err := s.pullImage(ctx, req, plat, deadline)
	if err != nil {
		return "", nil, release, err
	}
	if err := checkImageMountPoints(rf, plat.Image, irp); err != nil {
		rf.Release()
		return "", nil, release, err
	}
	in.Rootfs, in.ImageEnv, in.HostBinds = rf.Path, rf.Config.Env, imageHostsBind(rf, s.hosts)
	return rf.Config.User, fileIDDB{rootfs: rf.Path}, rf.Release, nil
}

// run does the work of Run; errors carry gRPC codes.
func (s *Service) run(ctx context.Context, req *runnerpb.RunRequest) (*runnerpb.RunResponse, error) {
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	plat, err := parsePlatform(&s.cfg, req.GetPlatform())
	if err != nil {
		return nil, err
	}
	timeout, err := actionTimeout(&s.cfg, req)
	if err != nil {
		return nil, err
	}
	var deadline time.Time // for the image's pull, which the timeout covers
	if timeout > 0 && plat.ImageRef != nil {
		deadline = time.Now().Add(timeout)
	}
	irp := inputRootPath(&s.cfg, plat)
	if err := checkWorkingDirectory(req.GetInputRoot(), req.GetWorkingDirectory()); err != nil {
		return nil, err
	}

	in := specInput{Config: &s.cfg, Request: req, Platform: plat}
	imageUser, db, release, err := s.resolveRootfs(ctx, req, plat, irp, deadline, &in)
	if err != nil {
		return nil, err
	}
	defer release()
	runTimeout := timeout // what the image's pull left of it
	if !deadline.IsZero() {
		if runTimeout = time.Until(deadline); runTimeout <= 0 {
			return nil, pullTimedOut(plat.Image)
		}
	}
	if in.User, err = chooseUser(&s.cfg, plat, imageUser, db); err != nil {
		return nil, err
	}

	// Taken only now: an image pull does not hold a slot.
	slot, ok := s.slots.acquireWithin(ctx, s.cfg.Sandbox.KillGrace+slotWait)
	if !ok {
		return nil, status.Errorf(codes.Unavailable, "all %d sandbox slots are busy (max_sandboxes)", s.cfg.MaxSandboxes)
	}
	defer s.slots.release(slot.index)
	in.IDBase = slot.hostBase
	spec, err := buildSpec(in)
	if err != nil {
		return nil, err
	}
	given, err := giveInputRoot(spec, in.User, req.GetActionDir(), req.GetInputRoot())
	if err != nil {
		return nil, err
	}
	// The slot's bundle directory is ours until release. The launcher
	// takes the spec in memory: the native one needs no config.json at
	// all, an external runtime gets it written there for this run only.
	sreq := sandbox.Request{
		Bundle: filepath.Join(s.bundles, strconv.Itoa(slot.index)), Spec: spec,
		Stdout: req.GetStdoutPath(), Stderr: req.GetStderrPath(), Timeout: runTimeout,
		Transient: slot.transient,
	}
	if ctx.Err() != nil {
		// Cancelled while being set up: a sandbox started now would
		// only be terminated, holding the slot meanwhile.
		return nil, status.FromContextError(ctx.Err()).Err()
	}

	start := s.clock.Now()
	res, overQuota, err := s.runGuarded(ctx, sreq, req.GetInputRoot(), slot.hostBase, given)
	end := s.clock.Now()
	if err != nil {
		return nil, sandboxError(err)
	}
	return response(res, runFacts{timeout: timeout, limits: limitsOf(&s.cfg, plat), pids: s.cfg.PidsLimit,
		diskQuota: s.cfg.DiskQuota, diskQuotaFiles: s.cfg.DiskQuotaFiles, overQuota: overQuota}, start, end), nil
}

// runGuarded runs sreq with a diskGuard on its input root (unless there
// is no disk quota), which kills the sandbox at once past a quota; hit
// says which.
func (s *Service) runGuarded(ctx context.Context, sreq sandbox.Request, inputRoot string, idBase uint32, given givenDirs) (_ *sandbox.Result, hit quotaHit, _ error) {
	g := diskGuard{root: inputRoot, bytes: s.cfg.DiskQuota, files: s.cfg.DiskQuotaFiles, given: given, owns: func(uid uint32) bool {
		return uid >= idBase && uint64(uid) < uint64(idBase)+sandbox.DefaultIDRange
	}}
	if g.bytes <= 0 && g.files <= 0 {
		res, err := s.launcher.Run(ctx, sreq)
		return res, quotaNone, err
	}
	runCtx, kill := context.WithCancelCause(ctx)
	defer kill(nil)
	guardCtx, stopGuard := context.WithCancel(runCtx)
	over := make(chan quotaHit, 1)
	go func() { over <- g.watch(guardCtx, func() { kill(sandbox.ErrKillNow) }) }()
	res, err := s.launcher.Run(runCtx, sreq)
	stopGuard()
	return res, <-over, err
}

// actionTimeout is the request's timeout, or the config's default.
func actionTimeout(cfg *Config, req *runnerpb.RunRequest) (time.Duration, error) {
	timeout := cfg.DefaultTimeout
	if req.GetTimeout() != nil {
		if err := req.GetTimeout().CheckValid(); err != nil || req.GetTimeout().AsDuration() < 0 {
			return 0, status.Error(codes.InvalidArgument, "timeout: want a valid, non-negative duration")
		}
		if d := req.GetTimeout().AsDuration(); d > 0 {
			timeout = d
		}
	}
	return timeout, nil
}

// giveInputRoot chowns the action directory (if any) and the input root's
// directories to the host ids that the sandbox user maps to under spec.
func giveInputRoot(spec *specs.Spec, user sandboxUser, actionDir, inputRoot string) (givenDirs, error) {
	hostUID, err1 := sandbox.HostID(spec.Linux.UIDMappings, user.UID)
	hostGID, err2 := sandbox.HostID(spec.Linux.GIDMappings, user.GID)
	if err := errors.Join(err1, err2); err != nil {
		return nil, status.Errorf(codes.Internal, "map user: %v", err)
	}
	var given givenDirs
	err := giveActionDir(actionDir, int(hostUID), int(hostGID))
	if err == nil {
		given, err = chownDirectories(inputRoot, int(hostUID), int(hostGID))
	}
	if err != nil {
		if isDiskFull(err) { // EDQUOT: the sandbox's ids are over a quota
			return nil, diskFull("making the input root writable", err)
		}
		return nil, status.Errorf(codes.Internal, "make input root writable: %v", err)
	}
	return given, nil
}

// underHidden reports whether p's real location (what host binds would
// show) lies strictly below a hidden path.
func (s *Service) underHidden(p string) bool {
	below := func(p string) bool {
		for _, h := range s.hidden {
			if strings.HasPrefix(p, h+"/") {
				return true
			}
		}
		return false
	}
	real, err := filepath.EvalSymlinks(p)
	return err == nil && below(real)
}

// giveActionDir chowns the action directory dir ("" = none) to the
// sandbox user's host ids, without following a symlink at dir. The worker
// made it mode 0700, so only those ids (and root) may then search it: the
// sandbox, whose init opens the input root by its host path, and not the
// host's other users, who could otherwise run what the action left there
// (a setuid file, say) as the sandbox's uid. Its mode is the worker's to
// set: changing the mode of a directory the runner does not own would need
// CAP_FOWNER, which the runner's unit does not grant.
func giveActionDir(dir string, uid, gid int) error {
	if dir == "" {
		return nil
	}
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open action directory: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("chown action directory: %w", err)
	}
	return nil
}
