package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// The spawner is this binary re-executed by a Launcher. It is small and
// long-lived, so cloning a sandbox never involves the caller's heap (and,
// where initStart can clone with CLONE_VM, copies nothing at all). It reads
// spawnRequests on stdin and answers spawnResponses on stdout, in binary
// frames (spawn_protocol.go); requests run concurrently. When stdin closes (the launcher exited
// or closed it), it kills every sandbox, cleans up and exits.
//
// Each sandbox's first process is the init (sandbox/internal/initprog), a
// small freestanding C program that the spawner executes from a sealed
// memfd (sealedInit): it starts with no runtime to set up,
// and nothing inside a sandbox can reach a writable copy of any host
// binary. The launcher has turned the bundle into the init's plan
// (initplan.Plan, a pure function: planFor); the spawner sends it on the
// init's control pipe.
//
// To take the fork, the exec and the init's start-up off each sandbox's
// critical path, the spawner keeps inits started ahead ("warm", warmDepth
// of them) for each of the latest clone parameters (namespaces, id
// mappings) it ran with: each in its own fresh cgroup without limits,
// waiting for its plan. A Run takes one, applies the spec's limits to its
// cgroup and hands it the plan; a new one is started in the background,
// unless the request is transient (its id mappings not expected again
// soon).

type spawner struct {
	out   io.Writer // the launcher's pipe; whole frames under outMu
	outMu sync.Mutex
	seq   atomic.Uint64
	wg    sync.WaitGroup
	// initPath executes the init (a /proc/self/fd path of the memfd), or
	// is empty with initErr saying why there is none.
	initPath string
	initErr  error
	cgroups  *cgroupPool

	mu       sync.Mutex // guards the fields below
	running  map[uint64]*spawnedSandbox
	warm     map[string][]*warmSlot // oldest first
	lastUse  map[string]uint64      // per warm key, from useClock
	useClock uint64
	closed   bool

	warmDepth int // inits kept started ahead per kind
}

type spawnedSandbox struct {
	cancel, killNow      chan struct{}
	cancelOnce, killOnce sync.Once
}

func newSpawnedSandbox() *spawnedSandbox {
	return &spawnedSandbox{cancel: make(chan struct{}), killNow: make(chan struct{})}
}

func (s *spawnedSandbox) stop() { s.cancelOnce.Do(func() { close(s.cancel) }) }
func (s *spawnedSandbox) kill() { s.killOnce.Do(func() { close(s.killNow) }) }

func runSpawner(warmDepth int) int {
	s := &spawner{
		warmDepth: warmDepth,
		out:       polledPipe(1, "stdout"),
		running:   map[uint64]*spawnedSandbox{},
		warm:      map[string][]*warmSlot{},
		lastUse:   map[string]uint64{},
	}
	s.cgroups = newCgroupPool(&s.seq)
	if fd, err := sealedInit(); err != nil {
		s.initErr = err
	} else {
		s.initPath = fmt.Sprintf("/proc/self/fd/%d", fd)
	}

	in := bufio.NewReader(polledPipe(0, "stdin"))
	var frame []byte
	for {
		var err error
		if frame, err = readSpawnFrame(in, frame, "spawn request"); err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
			}
			break
		}
		req, err := decodeSpawnRequest(frame)
		if err != nil {
			// The frame was whole: the next one can still be read.
			// A run that cannot be decoded is answered, or its
			// caller would wait for ever.
			fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
			if req.Op == opRun {
				s.reply(spawnResponse{ID: req.ID, Error: fmt.Errorf("%w: %w", ErrSetup, err).Error(), Kind: kindSetup})
			}
			continue
		}
		switch req.Op {
		case opRun:
			s.start(req)
		case opCancel, opKill:
			s.mu.Lock()
			if sb := s.running[req.ID]; sb != nil && req.Op == opKill {
				sb.kill()
			} else if sb != nil {
				sb.stop()
			}
			s.mu.Unlock()
		}
	}
	// The launcher is gone: nothing may outlive it.
	s.mu.Lock()
	s.closed = true
	for _, sb := range s.running {
		sb.stop()
	}
	warm := s.warm
	s.warm = nil
	s.mu.Unlock()
	for _, slots := range warm {
		for _, ws := range slots {
			s.release(ws)
		}
	}
	s.wg.Wait()
	s.cgroups.close()
	return 0
}

// polledPipe returns the launcher's pipe at fd as a file the runtime's
// poller waits on. As inherited, the pipe is blocking: each wait for the
// next request would then hold a thread in read(2), and while one does,
// the runtime's sysmon keeps waking (every 20 us after any activity) to
// hand its processor to another thread, a cost paid on every sandbox.
func polledPipe(fd int, name string) *os.File {
	// Without O_NONBLOCK (it could not be set), os.NewFile makes a
	// blocking file: slower, still correct.
	_ = syscall.SetNonblock(fd, true)
	return os.NewFile(uintptr(fd), name)
}

// start runs req in a goroutine of its own and answers it when it ends.
func (s *spawner) start(req spawnRequest) {
	sb := newSpawnedSandbox()
	s.mu.Lock()
	s.running[req.ID] = sb
	s.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		res, refill, err := s.run(req, sb)
		s.mu.Lock()
		delete(s.running, req.ID)
		s.mu.Unlock()
		resp := spawnResponse{ID: req.ID, Result: res}
		if err != nil {
			resp.Error, resp.Kind, resp.Errno = err.Error(), kindOf(err), errnoOf(err)
		}
		s.reply(resp)
		// Starting the next warm init is not the caller's business.
		refill()
	}()
}

// reply sends resp to the launcher. An error means the launcher is gone,
// and stdin closes too: the main loop then ends every sandbox.
func (s *spawner) reply(resp spawnResponse) {
	frame := encodeSpawnResponse(&resp)
	s.outMu.Lock()
	_, _ = s.out.Write(frame)
	s.outMu.Unlock()
}

// startedInit is an init process waiting for its plan, in its own cgroup.
type startedInit struct {
	cg             sandboxCgroup
	cgParent       string
	proc           *initProcess
	ctlW, statR    *os.File
	stdout, stderr *outputCapture
}

// startInit clones a new init with p, born inside a cgroup of its own
// (from the pool: without limits and without processes).
func (s *spawner) startInit(p initParams) (_ *startedInit, err error) {
	if s.initErr != nil {
		return nil, s.initErr
	}
	cg, err := s.cgroups.get(p.cgroupParent)
	if err != nil {
		return nil, err
	}
	var files []*os.File // ours, closed on failure
	var stdout, stderr *outputCapture
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			if stdout != nil {
				stdout.abort()
			}
			if stderr != nil {
				stderr.abort()
			}
			s.cgroups.put(p.cgroupParent, cg, false)
		}
	}()
	if stdout, err = newOutputCapture(); err != nil {
		return nil, err
	}
	if stderr, err = newOutputCapture(); err != nil {
		return nil, err
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	files = append(files, ctlW)
	defer ctlR.Close()
	statR, statW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	files = append(files, statR)
	defer statW.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()
	st := &initStart{
		path:  s.initPath,
		argv:  []string{initArg0},
		files: [5]*os.File{devNull, stdout.w, stderr.w, ctlR, statW},
		clone: p.cloneParams,
	}
	pid, err := cg.start(st.start)
	if err != nil {
		return nil, fmt.Errorf("start sandbox init: %w", err)
	}
	// Before anything reaps it (its pid cannot be reused) and before it
	// has its plan (no code of the action's has run).
	if err := setOOMScoreAdj(pid); err != nil {
		killAndReap(pid)
		return nil, fmt.Errorf("sandbox init oom_score_adj: %w", err)
	}
	stdout.handedOver()
	stderr.handedOver()
	w := &startedInit{
		cg: cg, cgParent: p.cgroupParent, proc: watchInit(pid), ctlW: ctlW, statR: statR,
		stdout: stdout, stderr: stderr,
	}
	return w, nil
}

// run runs one sandbox to its end: when it returns, every process of the
// sandbox but its exiting init is gone. refill, always non-nil, waits for
// that init, gives its cgroup back to the pool and starts the next warm
// init (none for a transient request); it runs after the result has been
// sent.
func (s *spawner) run(req spawnRequest, sb *spawnedSandbox) (_ *Result, refill func(), _ error) {
	nop := func() {}
	setupErr := func(err error) (*Result, func(), error) {
		if kindOf(err) == kindNone {
			err = fmt.Errorf("%w: %w", ErrSetup, err)
		}
		return nil, nop, err
	}
	if len(req.Plan) < initplan.FrameHeader {
		return setupErr(errors.New("the request carries no init plan"))
	}
	p := initParams{req.Clone, req.CgroupParent}
	stdout, stderr, err := openOutputs(req)
	if err != nil {
		return setupErr(err)
	}
	start := time.Now()
	w, err := s.handOver(p, req.Resources, req.Plan)
	if err != nil {
		closeOutput(stdout)
		closeOutput(stderr)
		return setupErr(err)
	}
	w.stdout.start(stdout, req.OutputLimit)
	w.stderr.start(stderr, req.OutputLimit)
	var statusData []byte
	statusDone := make(chan struct{})
	go func() {
		statusData, _ = io.ReadAll(w.statR)
		w.statR.Close()
		close(statusDone)
	}()
	res := &Result{}
	awaitSandbox(w, req, sb, statusDone, res)
	res.WallTime = time.Since(start)
	reported := false
	select {
	case <-statusDone:
		reported = len(statusData) > 0
	default:
	}
	if res.Killed {
		// Every process of the sandbox has a SIGKILL pending and runs no
		// more user code: what is in the pipes is all the output there
		// will be. Their exit (thousands of them after a fork bomb) is
		// the kernel's work, and need not delay the result.
		w.stdout.stopAfterKill()
		w.stderr.stopAfterKill()
	}
	res.Stdout = w.stdout.wait()
	res.Stderr = w.stderr.wait()
	res.Cgroup = w.cg.stats()
	res.OOMKilled = res.Cgroup.OOMKills > 0
	return s.settle(w, p, req.Transient, res, reported, statusDone, func() []byte { return statusData })
}

// openOutputs opens the files a sandbox's stdout and stderr go to.
func openOutputs(req spawnRequest) (stdout, stderr *os.File, err error) {
	if stdout, err = openOutput(req.Stdout); err != nil {
		return nil, nil, err
	}
	if stderr, err = openOutput(req.Stderr); err != nil {
		closeOutput(stdout)
		return nil, nil, err
	}
	return stdout, stderr, nil
}

// awaitSandbox waits until the sandbox's init has reported (or died), or
// ends it on timeout, cancellation or a kill request, recording how in
// res. Once the init reported, every process of the sandbox is gone; once
// the kill path has run, every one of them is dying. To terminate, the
// spawner signals the sandbox's processes itself (the init, pid 1 there,
// ignores what it has no handler for), after telling the init, which
// checks once it has forked the command: a termination that comes before
// the command exists still reaches it.
func awaitSandbox(w *startedInit, req spawnRequest, sb *spawnedSandbox, statusDone <-chan struct{}, res *Result) {
	ended := make(chan struct{})
	end := sync.OnceFunc(func() { close(ended) })
	go func() { <-statusDone; end() }()
	awaitEnd(ended, req.Timeout, req.KillGrace, sb.cancel, sb.killNow,
		func() {
			_, _ = w.ctlW.Write([]byte{initplan.Terminate})
			w.cg.signalAll(syscall.SIGTERM, w.proc.pid)
		},
		// Past the grace period: freeze the whole sandbox and kill every
		// process in it, so that a fork bomb ends as promptly as a
		// sleeping command. The sandbox has then ended: its processes,
		// the init among them, run no more user code, though thousands
		// may take a while to exit. (The init's own SIGKILL would end
		// them all too, through its pid namespace, but only once it got
		// the CPU to exit.)
		func() { w.cg.killAll(); w.proc.signal(syscall.SIGKILL); end() }, res)
}

// settle completes res from the init's report and returns what refills
// the pool. The init exits right after reporting (or has died); the kernel
// then tears its namespaces down. That need not delay the result: once it
// has reported, every other process of the sandbox is gone and its output
// is complete. Its cgroup is announced to the pool and put back after the
// exit, before the next warm init for p is started (warmAfter).
func (s *spawner) settle(w *startedInit, p initParams, transient bool, res *Result, reported bool, statusDone <-chan struct{}, status func() []byte) (*Result, func(), error) {
	finish := func(expected bool) {
		w.proc.signal(syscall.SIGKILL)
		<-w.proc.exited
		w.ctlW.Close()
		s.cgroups.put(w.cgParent, w.cg, expected)
	}
	switch {
	case !reported && res.Killed:
		// The init dies of the kill path's SIGKILL; it is reaped once
		// every process of its namespace has exited, after the result.
		res.InitDied, res.ExitCode, res.Signal = true, -1, syscall.SIGKILL
		s.cgroups.expect(w.cgParent)
		return res, func() { finish(true); <-statusDone; s.warmAfter(p, transient) }, nil
	case !reported:
		finish(false)
		initDied(w.proc, res)
		return res, func() { s.warmAfter(p, transient) }, nil
	}
	s.cgroups.expect(w.cgParent)
	refill := func() { finish(true); s.warmAfter(p, transient) }
	if err := fromStatus(status(), res); err != nil {
		return nil, refill, err
	}
	return res, refill, nil
}

// initDied fills res for an init that died before reporting (SIGKILLed
// after the grace period, or OOM-killed itself): the command counts as
// killed by the init's signal.
func initDied(p *initProcess, res *Result) {
	res.InitDied = true
	res.ExitCode, res.Signal = -1, syscall.SIGKILL
	if p.status.Signaled() {
		res.Signal = p.status.Signal()
	}
	res.Usage = usageFromRusage(&p.usage)
}
