package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The spawner is this binary re-executed by a Launcher. It is small and
// long-lived, so cloning a sandbox (a full fork, because of CLONE_NEWUSER)
// copies its few megabytes rather than the caller's heap. It reads
// spawnRequests as JSON lines on stdin and answers spawnResponses on
// stdout; requests run concurrently. When stdin closes (the launcher exited
// or closed it), it kills every sandbox, cleans up and exits.
//
// To take the fork, the exec of this binary and the Go runtime's start-up
// off each sandbox's critical path, the spawner keeps one init started
// ahead ("warm") for the namespaces and id mappings it last ran with: in its
// own fresh cgroup without limits, waiting for its config. A Run takes it,
// applies the spec's limits to its cgroup and hands it the config; a new
// one is started in the background.

type spawnRequest struct {
	Op           string // "run" or "cancel"
	ID           uint64
	Bundle       string        `json:",omitempty"`
	Stdout       string        `json:",omitempty"`
	Stderr       string        `json:",omitempty"`
	OutputLimit  int64         `json:",omitempty"`
	Timeout      time.Duration `json:",omitempty"`
	KillGrace    time.Duration `json:",omitempty"`
	CgroupParent string        `json:",omitempty"`
}

type spawnResponse struct {
	ID     uint64
	Result *Result `json:",omitempty"`
	Error  string  `json:",omitempty"`
	// Kind names the sentinel Error wraps (errorKinds).
	Kind string `json:",omitempty"`
}

type spawner struct {
	out   *json.Encoder
	outMu sync.Mutex
	seq   atomic.Uint64
	wg    sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	running map[uint64]*spawnedSandbox
	warm    map[string][]*warmSlot // for the latest params only; oldest first
	closed  bool

	warmDepth int // inits kept started ahead
}

// warmSlot is an init being started ahead; ready is closed once w or err
// is set. A Run claims the slot even before it is ready: waiting for an
// init already half started beats starting a second one.
type warmSlot struct {
	ready chan struct{}
	w     *startedInit
	err   error
}

// release discards the slot's init once it is ready.
func (ws *warmSlot) release() {
	<-ws.ready
	if ws.w != nil {
		ws.w.discard()
	}
}

type spawnedSandbox struct {
	cancel chan struct{}
	once   sync.Once
}

func (s *spawnedSandbox) stop() { s.once.Do(func() { close(s.cancel) }) }

func runSpawner(warmDepth int) int {
	s := &spawner{
		warmDepth: warmDepth,
		out:       json.NewEncoder(os.Stdout),
		running:   map[uint64]*spawnedSandbox{},
		warm:      map[string][]*warmSlot{},
	}
	in := json.NewDecoder(bufio.NewReader(os.Stdin))
	for {
		var req spawnRequest
		if err := in.Decode(&req); err != nil {
			if !errors.Is(err, io.EOF) {
				fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
			}
			break
		}
		switch req.Op {
		case "run":
			sb := &spawnedSandbox{cancel: make(chan struct{})}
			s.mu.Lock()
			s.running[req.ID] = sb
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				res, cleanup, err := s.run(req, sb.cancel)
				s.mu.Lock()
				delete(s.running, req.ID)
				s.mu.Unlock()
				resp := spawnResponse{ID: req.ID, Result: res}
				if err != nil {
					resp.Error, resp.Kind = err.Error(), errorKind(err)
				}
				s.outMu.Lock()
				_ = s.out.Encode(resp)
				s.outMu.Unlock()
				// Removing the cgroup is not the caller's business.
				cleanup()
			}()
		case "cancel":
			s.mu.Lock()
			if sb := s.running[req.ID]; sb != nil {
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
			ws.release()
		}
	}
	s.wg.Wait()
	return 0
}

// initParams are what an init is cloned with; inits are interchangeable
// between specs with the same params.
type initParams struct {
	flags        uintptr
	uids, gids   []specs.LinuxIDMapping
	cgroupParent string
}

func (p initParams) key() string {
	return fmt.Sprintf("%x %v %v %s", p.flags, p.uids, p.gids, p.cgroupParent)
}

func paramsFor(spec *specs.Spec, cgroupParent string) initParams {
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID)
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.IPCNamespace:
			flags |= syscall.CLONE_NEWIPC
		case specs.UTSNamespace:
			flags |= syscall.CLONE_NEWUTS
		case specs.NetworkNamespace:
			flags |= syscall.CLONE_NEWNET
		}
	}
	return initParams{flags: flags, uids: spec.Linux.UIDMappings, gids: spec.Linux.GIDMappings, cgroupParent: cgroupParent}
}

// startedInit is an init process waiting for its config, in its own cgroup.
type startedInit struct {
	cg             sandboxCgroup
	pid            int
	proc           *os.Process
	cfgW, statR    *os.File
	stdout, stderr *outputCapture
	exited         chan struct{} // closed when the init has been reaped
	state          *os.ProcessState
}

// startInit clones a new init with p, born inside a fresh cgroup.
func (s *spawner) startInit(p initParams) (_ *startedInit, err error) {
	name := fmt.Sprintf("%d-%d", os.Getpid(), s.seq.Add(1))
	cg, err := newSandboxCgroup(p.cgroupParent, name, nil)
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
			cg.killAll()
			_ = cg.remove()
		}
	}()
	if stdout, err = newOutputCapture(); err != nil {
		return nil, err
	}
	if stderr, err = newOutputCapture(); err != nil {
		return nil, err
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	files = append(files, cfgW)
	defer cfgR.Close()
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
	newCmd := func() *exec.Cmd {
		return &exec.Cmd{
			Path: "/proc/self/exe",
			Args: []string{initArg0},
			// One P: the init does little at a time, and its threads
			// count against the sandbox's pids limit.
			Env:        []string{roleEnv + "=" + roleInit, "GOMAXPROCS=1"},
			Stdin:      devNull,
			Stdout:     stdout.w,
			Stderr:     stderr.w,
			ExtraFiles: []*os.File{cfgR, statW},
			SysProcAttr: &syscall.SysProcAttr{
				Cloneflags:                 p.flags,
				UidMappings:                idMaps(p.uids),
				GidMappings:                idMaps(p.gids),
				GidMappingsEnableSetgroups: true,
				// The child still has host uid 0, which is unmapped:
				// become container root (a mapped host uid) before
				// exec, or the exec would drop every capability.
				Credential: &syscall.Credential{Uid: 0, Gid: 0},
				Pdeathsig:  syscall.SIGKILL,
			},
		}
	}
	cmd, err := cg.start(newCmd)
	if err != nil {
		return nil, fmt.Errorf("start sandbox init: %w", err)
	}
	stdout.handedOver()
	stderr.handedOver()
	w := &startedInit{
		cg: cg, pid: cmd.Process.Pid, proc: cmd.Process, cfgW: cfgW, statR: statR,
		stdout: stdout, stderr: stderr, exited: make(chan struct{}),
	}
	go func() {
		_ = cmd.Wait()
		w.state = cmd.ProcessState
		close(w.exited)
	}()
	return w, nil
}

// discard kills an init that never got work and releases what it holds.
func (w *startedInit) discard() {
	_ = w.proc.Kill()
	<-w.exited
	w.cfgW.Close()
	w.statR.Close()
	w.stdout.abort()
	w.stderr.abort()
	w.cg.killAll()
	_ = w.cg.remove()
}

// takeWarm returns the oldest warm init for key, waiting for it if it is
// still starting, or nil if there is none (or it failed or died).
func (s *spawner) takeWarm(key string) *startedInit {
	s.mu.Lock()
	slots := s.warm[key]
	if len(slots) == 0 {
		s.mu.Unlock()
		return nil
	}
	ws := slots[0]
	s.warm[key] = slots[1:]
	s.mu.Unlock()
	<-ws.ready
	if ws.w == nil {
		return nil
	}
	select {
	case <-ws.w.exited:
		ws.w.discard()
		return nil
	default:
		return ws.w
	}
}

// refill starts warm inits for p until warmDepth are there or starting.
// Inits for other params are discarded: only the latest kind is kept warm.
func (s *spawner) refill(p initParams) {
	key := p.key()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	var old []*warmSlot
	for k, slots := range s.warm {
		if k != key {
			old = append(old, slots...)
			delete(s.warm, k)
		}
	}
	var fresh []*warmSlot
	for len(s.warm[key]) < s.warmDepth {
		ws := &warmSlot{ready: make(chan struct{})}
		s.warm[key] = append(s.warm[key], ws)
		fresh = append(fresh, ws)
	}
	s.mu.Unlock()
	for _, o := range old {
		o.release()
	}
	for _, ws := range fresh {
		ws.w, ws.err = s.startInit(p)
		close(ws.ready)
	}
}

// run runs one sandbox to its end. cleanup, always non-nil, removes what is
// left (the cgroup) and may run after the result has been sent.
func (s *spawner) run(req spawnRequest, cancel <-chan struct{}) (*Result, func(), error) {
	nop := func() {}
	b, err := loadBundle(req.Bundle)
	if err != nil {
		return nil, nop, err
	}
	spec := b.spec
	p := paramsFor(spec, req.CgroupParent)
	w := s.takeWarm(p.key())
	if w == nil {
		if w, err = s.startInit(p); err != nil {
			return nil, nop, err
		}
	}
	fail := func(err error) (*Result, func(), error) {
		w.discard()
		return nil, nop, err
	}
	if err := w.cg.update(spec.Linux.Resources); err != nil {
		return fail(fmt.Errorf("set cgroup limits: %w", err))
	}
	if err := w.stdout.open(req.Stdout, req.OutputLimit); err != nil {
		return fail(err)
	}
	if err := w.stderr.open(req.Stderr, req.OutputLimit); err != nil {
		return fail(err)
	}

	start := time.Now()
	w.stdout.start()
	w.stderr.start()
	cfg, _ := json.Marshal(initConfig{Spec: spec, Bundle: b.dir, Rootfs: b.rootfs,
		Network: p.flags&syscall.CLONE_NEWNET != 0})
	_, _ = w.cfgW.Write(cfg)
	// End of the config: the init may go on.
	w.cfgW.Close()
	var statusData []byte
	statusDone := make(chan struct{})
	go func() {
		statusData, _ = io.ReadAll(w.statR)
		w.statR.Close()
		close(statusDone)
	}()

	res := &Result{}
	// Once the init reported (or died), every process of the sandbox is
	// gone.
	awaitEnd(statusDone, req.Timeout, req.KillGrace, cancel,
		func() { _ = syscall.Kill(w.pid, syscall.SIGTERM) },
		func() { _ = syscall.Kill(w.pid, syscall.SIGKILL) }, res)
	res.WallTime = time.Since(start)
	res.Stdout = w.stdout.wait()
	res.Stderr = w.stderr.wait()
	res.Cgroup = w.cg.stats()
	res.OOMKilled = res.Cgroup.OOMKills > 0
	cleanup := func() {
		s.refill(p)
		_ = syscall.Kill(w.pid, syscall.SIGKILL) // it is exiting anyway
		<-w.exited
		w.cg.killAll()
		if err := w.cg.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
		}
	}

	var st initStatus
	if len(statusData) > 0 && json.Unmarshal(statusData, &st) == nil {
		if st.Error != "" {
			if st.NotStarted {
				// The message already begins with ErrCommandNotStarted's.
				return nil, cleanup, kindError("not-started", st.Error)
			}
			return nil, cleanup, fmt.Errorf("%w: %s", ErrSetup, st.Error)
		}
		res.ExitCode, res.Signal, res.Usage = st.ExitCode, syscall.Signal(st.Signal), st.Usage
		return res, cleanup, nil
	}
	// The init died before reporting (SIGKILLed after the grace period, or
	// OOM-killed itself): the command counts as killed by that signal.
	<-w.exited
	res.ExitCode, res.Signal = -1, syscall.SIGKILL
	if ws, ok := w.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = ws.Signal()
	}
	if ru, ok := w.state.SysUsage().(*syscall.Rusage); ok {
		res.Usage = usageFromRusage(ru)
	}
	return res, cleanup, nil
}

func idMaps(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
