package scheduler

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/rev2"
	"github.com/paddock-build/paddock/storage"
)

// Clock tells the time (package internal/clock). Tests inject a fake one
// and call Scheduler.Tick.
type Clock = clock.Clock

// Options are what New needs: the configuration and the collaborators.
type Options struct {
	Config
	// BlobStore is the CAS the Action and Command are read from. Required.
	BlobStore storage.BlobStore
	// ActionCache is consulted before executing. Required.
	ActionCache storage.ActionCache
	// Clock defaults to the real clock.
	Clock Clock
	// Logger receives notable decisions (workers lost, actions requeued or
	// given up) and worker connections. Defaults to slog.Default().
	Logger *slog.Logger
	// NewID returns a unique id for an operation name; defaults to a random
	// UUID.
	NewID func() string
	// TenantLimits bound each tenant's queued and running actions (from
	// the auth policy: auth.Policy.TenantLimits). Nil: no bounds beyond
	// Config's; tenants still take turns (docs/scheduler.md).
	TenantLimits map[string]auth.Limits
	// OnJournalFailed, if set, is called once when the journal cannot be
	// written (a full disk, say), with the cause: the scheduler refuses
	// new work from then on until it is restarted, and the caller turns
	// its health checks to NOT_SERVING so an orchestrator restarts it.
	// Called from the journal's writer goroutine without the scheduler's
	// lock; it must not block for long.
	OnJournalFailed func(error)
}

// Scheduler is the scheduler: the core under a mutex, plus the side effects
// (worker sessions, operation watchers, drain waiters) and storage. Safe for
// concurrent use. Create it with New, serve it with Register, stop it with
// Close.
type Scheduler struct {
	cfg   Config
	cas   storage.BlobStore
	ac    storage.ActionCache
	clock Clock
	newID func() string
	log   *slog.Logger
	// metrics are updated under mu, as effects are applied.
	metrics *metrics

	known map[string]bool // platform property names accepted
	route map[string]bool // platform property names that select a queue

	mu           sync.Mutex
	core         *core
	watchers     map[string]chan struct{} // closed when the operation changes
	followers    *followers               // clients following each operation
	sessions     map[string]*session      // current session of each worker
	drainWaiters map[string][]chan error  // closed when idle; ABORTED first if undrained or lost
	dur          *durability              // nil without a journal
	// onJournalFailed is Options.OnJournalFailed (read-only).
	onJournalFailed func(error)

	stop     chan struct{}
	stopOnce sync.Once
	ticker   sync.WaitGroup
}

// New returns a scheduler and starts its clock ticks (leases, retention)
// every TickInterval. Zero fields of Config take their defaults.
func New(opts Options) (*Scheduler, error) {
	if opts.BlobStore == nil || opts.ActionCache == nil {
		return nil, errors.New("scheduler: BlobStore and ActionCache are required")
	}
	cfg := opts.Config
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Scheduler{
		cfg:          cfg,
		cas:          opts.BlobStore,
		ac:           opts.ActionCache,
		clock:        opts.Clock,
		newID:        opts.NewID,
		known:        map[string]bool{},
		route:        map[string]bool{},
		core:         newCoreWithLimits(cfg, opts.TenantLimits),
		watchers:     map[string]chan struct{}{},
		followers:    newFollowers(),
		sessions:     map[string]*session{},
		drainWaiters: map[string][]chan error{},
		stop:         make(chan struct{}),
		metrics:      newMetrics(),

		onJournalFailed: opts.OnJournalFailed,
	}
	if s.clock == nil {
		s.clock = clock.Real{}
	}
	s.log = opts.Logger
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.newID == nil {
		s.newID = uuid.NewString
	}
	for _, n := range append(rev2.RoutingProperties(), cfg.RoutingProperties...) {
		s.known[n], s.route[n] = true, true
	}
	for _, n := range append(rev2.ExecutionProperties(), cfg.ExecutionProperties...) {
		s.known[n] = true
	}
	if cfg.JournalDir != "" {
		if err := s.openJournal(); err != nil {
			return nil, err
		}
	}
	s.ticker.Add(1)
	go s.tickLoop()
	return s, nil
}

// Register adds the Execution, Operations, WorkerService and AdminService
// services to srv.
func (s *Scheduler) Register(srv *grpc.Server) {
	s.RegisterClient(srv)
	s.RegisterInternal(srv)
}

// RegisterClient adds the client API: Execution and Operations.
func (s *Scheduler) RegisterClient(srv *grpc.Server) {
	repb.RegisterExecutionServer(srv, &executionService{s: s})
	longrunningpb.RegisterOperationsServer(srv, &operationsService{s: s})
}

// RegisterInternal adds the worker protocol and the admin API, which a
// server may keep off the clients' listener (`paddock up` serves them on a
// local socket only).
func (s *Scheduler) RegisterInternal(srv *grpc.Server) {
	workerpb.RegisterWorkerServiceServer(srv, &workerService{s: s})
	workerpb.RegisterAdminServiceServer(srv, &adminService{s: s})
}

// Close stops the clock ticks, ends every worker session and closes the
// journal (what was accepted is then on disk).
func (s *Scheduler) Close() {
	first := false
	s.stopOnce.Do(func() { close(s.stop); first = true })
	s.ticker.Wait()
	s.mu.Lock()
	for _, sess := range s.sessions {
		sess.end("the scheduler is stopping")
	}
	s.mu.Unlock()
	if first && s.dur != nil {
		if err := s.dur.close(); err != nil {
			s.log.Error("scheduler: closing the journal", "error", err)
		}
	}
}

// Tick lets the scheduler act on the passage of time (lease expiry,
// retention). It runs every TickInterval; tests with a fake clock call it.
func (s *Scheduler) Tick() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.clock.Now()
	s.core.Tick(now)
	var stopped []string
	for _, name := range s.followers.abandoned(now, s.cfg.AbandonedGrace) {
		if v, ok := s.core.Operation(name); ok && !v.done {
			// Found just now under the same lock: Abandon cannot miss it.
			if err := s.core.Abandon(now, name, fmt.Sprintf("abandoned: no client followed it for %s (abandoned_grace)", s.cfg.AbandonedGrace)); err == nil {
				stopped = append(stopped, name)
			}
		}
	}
	logAbandoned(s.log, stopped, s.cfg.AbandonedGrace)
	s.apply()
}

// maxAbandonedLines is how many abandoned operations one tick names in a
// line each; the rest are counted in one more line.
const maxAbandonedLines = 10

// logAbandoned says which operations a tick abandoned (names, sorted).
// Said here: the worker and runner only see a cancel, which an operator
// would take for a client's CancelOperation. A client that drops 100,000
// operations at once (a killed build, or a restart's recovered operations
// none came back for) had made 100,000 lines in one tick, under the
// scheduler's lock; now it makes eleven.
func logAbandoned(log *slog.Logger, names []string, grace time.Duration) {
	for _, name := range names[:min(len(names), maxAbandonedLines)] {
		log.Info("scheduler: operation abandoned, its execution stopped: no client followed it", "operation", name, "abandoned_grace", grace)
	}
	if more := len(names) - maxAbandonedLines; more > 0 {
		log.Info("scheduler: more operations abandoned, their executions stopped: no client followed them", "count", more, "abandoned_grace", grace)
	}
}

// apply takes the core's effects and carries them out: at once without a
// journal, otherwise once their records are durable. It returns the seq of
// the journal record to wait for before answering a client (0 without a
// journal). Called with s.mu held; nothing in it blocks.
func (s *Scheduler) apply() uint64 {
	fx := s.core.takeEffects()
	for _, v := range fx.forgotten {
		s.followers.keepFinal(v)
	}
	s.metrics.observe(s.clock.Now(), fx, s.core.tenantOfExec)
	for _, n := range fx.notes {
		s.log.Info("scheduler: " + n)
	}
	if s.dur != nil {
		return s.hold(fx)
	}
	s.carryOut(fx)
	return 0
}

// carryOut performs effects. Called with s.mu held; nothing in it blocks.
func (s *Scheduler) carryOut(fx effects) {
	for _, d := range fx.dispatch {
		// A message for an older session of the worker is dropped: the
		// core reconciled the newer one without it.
		if sess := s.sessions[d.worker]; sess != nil && sess.gen == d.gen {
			sess.push(d.msg)
		}
	}
	for _, name := range fx.published {
		if ch := s.watchers[name]; ch != nil {
			close(ch)
			delete(s.watchers, name)
		}
	}
	for _, h := range fx.hangUp {
		if sess := s.sessions[h.worker]; sess != nil {
			sess.end(h.why)
			delete(s.sessions, h.worker)
		}
	}
	for _, id := range fx.idle {
		for _, ch := range s.drainWaiters[id] {
			close(ch)
		}
		delete(s.drainWaiters, id)
	}
	for _, id := range fx.undrained {
		for _, ch := range s.drainWaiters[id] {
			ch <- status.Errorf(codes.Aborted, "worker %q was undrained before it became idle", id)
			close(ch)
		}
		delete(s.drainWaiters, id)
	}
	// A lost worker did not finish its actions: a drain waiting for it
	// must not report it idle, as if it could be stopped with nothing
	// lost.
	for _, l := range fx.lost {
		for _, ch := range s.drainWaiters[l.id] {
			ch <- status.Errorf(codes.Aborted, "worker %q was lost before it became idle: %d of its actions were requeued, a retry each; it stays drained if it registers again, until undrained", l.id, l.requeued)
			close(ch)
		}
		delete(s.drainWaiters, l.id)
	}
}

// follower counts a client following the operation name until the
// returned func is called (see followers); false, and nothing counted,
// when the operation is unknown or not owner's. Counting first let
// another tenant's WaitExecution, answered NOT_FOUND, keep an operation
// from being abandoned, and made the followers keep any name a client
// sent (3 MiB names grew the scheduler by 800 MB for abandoned_grace).
func (s *Scheduler) follower(name, owner string) (func(), bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v, ok := s.operation(name); !ok || v.owner != owner {
		return nil, false
	}
	s.followers.attach(name)
	return func() {
		s.mu.Lock()
		s.followers.detach(name, s.clock.Now())
		s.mu.Unlock()
	}, true
}

// errOperationNotFound is the NOT_FOUND of an operation name that is
// unknown or another tenant's (the same answer), the name quoted short.
func errOperationNotFound(name, hint string) error {
	return status.Errorf(codes.NotFound, "operation %s not found%s", rev2.Quote(name), hint)
}

// watch returns an operation's state and a channel closed at its next
// change. An operation of another owner is not found: a tenant cannot tell
// whether another tenant's operation exists.
func (s *Scheduler) watch(name, owner string) (opView, <-chan struct{}, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.operation(name)
	if !ok || v.owner != owner {
		return v, nil, false
	}
	ch := s.watchers[name]
	if ch == nil {
		ch = make(chan struct{})
		s.watchers[name] = ch
	}
	return v, ch, true
}

// follow calls send with the operation's state now, at every stage change
// and every ExecuteUpdateInterval, until it is done. NOT_FOUND if the
// operation is unknown or not owner's.
func (s *Scheduler) follow(ctx context.Context, name, owner string, send func(opView) error) error {
	const gone = ": it finished too long ago, was deleted, or the scheduler restarted; Execute the action again"
	release, ok := s.follower(name, owner)
	if !ok {
		return errOperationNotFound(name, gone)
	}
	defer release()
	first, again := true, false
	var last repb.ExecutionStage_Value
	keepalive := time.NewTicker(s.cfg.ExecuteUpdateInterval)
	defer keepalive.Stop()
	for {
		v, ch, ok := s.watch(name, owner)
		if !ok {
			return errOperationNotFound(name, gone)
		}
		if first || again || v.stage != last || v.done {
			if err := send(v); err != nil {
				return err
			}
			first, again, last = false, false, v.stage
		}
		if v.done {
			return nil
		}
		select {
		case <-ch:
		case <-keepalive.C:
			again = true
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stop:
			// Ended at once: the server's graceful stop waited seconds for
			// streams that would never end, its port closed meanwhile, and
			// Bazel spent its retries on it and failed the build.
			return status.Errorf(codes.Unavailable, "the scheduler is stopping: call WaitExecution for %s again (with a journal the operation outlives a restart)", name)
		}
	}
}

// wait blocks until the operation is done or ctx ends, and returns its state.
func (s *Scheduler) wait(ctx context.Context, name, owner string) (opView, error) {
	release, ok := s.follower(name, owner)
	if !ok {
		return opView{}, errOperationNotFound(name, "")
	}
	defer release()
	for {
		v, ch, ok := s.watch(name, owner)
		if !ok {
			return v, errOperationNotFound(name, "")
		}
		if v.done {
			return v, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return v, nil
		case <-s.stop:
			return v, nil // as at the caller's deadline: it asks again
		}
	}
}

// Undrain lets a drained worker take work again, and returns the number of
// actions it runs. Drain calls waiting for it to become idle end with
// ABORTED.
func (s *Scheduler) Undrain(workerID string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, err := s.core.Undrain(s.clock.Now(), workerID)
	s.apply()
	return n, err
}

// Drain stops giving work to a worker. With wait, it returns once the
// worker runs nothing (or ctx ends), or fails with ABORTED when the worker
// is undrained or lost first. It returns the number of actions the worker
// still runs.
func (s *Scheduler) Drain(ctx context.Context, workerID string, wait bool) (int, error) {
	s.mu.Lock()
	n, err := s.core.Drain(s.clock.Now(), workerID)
	s.apply()
	if err != nil || !wait || n == 0 {
		s.mu.Unlock()
		return n, err
	}
	ch := make(chan error, 1)
	s.drainWaiters[workerID] = append(s.drainWaiters[workerID], ch)
	s.mu.Unlock()
	select {
	case err := <-ch:
		if err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			if w := s.core.workers[workerID]; w != nil {
				return len(w.running), err
			}
			return 0, err
		}
		return 0, nil
	case <-ctx.Done():
		s.mu.Lock()
		defer s.mu.Unlock()
		if w := s.core.workers[workerID]; w != nil {
			return len(w.running), nil
		}
		return 0, nil
	}
}
