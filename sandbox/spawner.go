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
}

type spawner struct {
	out     *json.Encoder
	outMu   sync.Mutex
	seq     atomic.Uint64
	mu      sync.Mutex
	running map[uint64]*spawnedSandbox
	wg      sync.WaitGroup
}

type spawnedSandbox struct {
	cancel chan struct{}
	once   sync.Once
}

func (s *spawnedSandbox) stop() { s.once.Do(func() { close(s.cancel) }) }

func runSpawner() int {
	s := &spawner{out: json.NewEncoder(os.Stdout), running: map[uint64]*spawnedSandbox{}}
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
				res, err := s.run(req, sb.cancel)
				s.mu.Lock()
				delete(s.running, req.ID)
				s.mu.Unlock()
				resp := spawnResponse{ID: req.ID, Result: res}
				if err != nil {
					resp.Error = err.Error()
				}
				s.outMu.Lock()
				_ = s.out.Encode(resp)
				s.outMu.Unlock()
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
	for _, sb := range s.running {
		sb.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return 0
}

// run runs one sandbox to its end.
func (s *spawner) run(req spawnRequest, cancel <-chan struct{}) (*Result, error) {
	b, err := loadBundle(req.Bundle)
	if err != nil {
		return nil, err
	}
	spec := b.spec
	name := fmt.Sprintf("%d-%d", os.Getpid(), s.seq.Add(1))
	cg, err := newSandboxCgroup(req.CgroupParent, name, spec.Linux.Resources)
	if err != nil {
		return nil, err
	}
	defer func() {
		cg.killAll()
		if err := cg.remove(); err != nil {
			fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
		}
	}()

	stdout, err := newOutputCapture(req.Stdout, req.OutputLimit)
	if err != nil {
		return nil, err
	}
	stderr, err := newOutputCapture(req.Stderr, req.OutputLimit)
	if err != nil {
		stdout.abort()
		return nil, err
	}
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		stdout.abort()
		stderr.abort()
		return nil, err
	}
	statR, statW, err := os.Pipe()
	if err != nil {
		stdout.abort()
		stderr.abort()
		cfgR.Close()
		cfgW.Close()
		return nil, err
	}
	defer statR.Close()
	defer cfgW.Close()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devNull.Close()

	network := hasNamespace(spec, specs.NetworkNamespace)
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
	newCmd := func() *exec.Cmd {
		return &exec.Cmd{
			Path:       "/proc/self/exe",
			Args:       []string{initArg0},
			Env:        []string{roleEnv + "=" + roleInit},
			Stdin:      devNull,
			Stdout:     stdout.w,
			Stderr:     stderr.w,
			ExtraFiles: []*os.File{cfgR, statW},
			SysProcAttr: &syscall.SysProcAttr{
				Cloneflags:                 flags,
				UidMappings:                idMaps(spec.Linux.UIDMappings),
				GidMappings:                idMaps(spec.Linux.GIDMappings),
				GidMappingsEnableSetgroups: true,
				// The child still has host uid 0, which is unmapped:
				// become container root (a mapped host uid) before
				// exec, or the exec would drop every capability.
				Credential: &syscall.Credential{Uid: 0, Gid: 0},
				Pdeathsig:  syscall.SIGKILL,
			},
		}
	}
	start := time.Now()
	cmd, err := cg.start(newCmd)
	cfgR.Close()
	statW.Close()
	if err != nil {
		stdout.abort()
		stderr.abort()
		return nil, fmt.Errorf("start sandbox init: %w", err)
	}
	stdout.start()
	stderr.start()
	pid := cmd.Process.Pid
	waitDone := make(chan error, 1)
	cfg, _ := json.Marshal(initConfig{Spec: spec, Bundle: b.dir, Rootfs: b.rootfs, Network: network})
	_, _ = cfgW.Write(cfg)
	// End of the config: the init may start the command.
	cfgW.Close()

	var statusData []byte
	statusDone := make(chan struct{})
	go func() {
		statusData, _ = io.ReadAll(statR)
		close(statusDone)
	}()
	go func() { waitDone <- cmd.Wait() }()

	res := &Result{}
	var timeout, grace <-chan time.Time
	if req.Timeout > 0 {
		t := time.NewTimer(req.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	terminate := func() {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		g := time.NewTimer(req.KillGrace)
		grace = g.C
		timeout, cancel = nil, nil
	}
wait:
	for {
		select {
		case <-waitDone:
			break wait
		case <-timeout:
			res.TimedOut = true
			terminate()
		case <-cancel:
			res.Canceled = true
			terminate()
		case <-grace:
			res.Killed = true
			grace = nil
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	res.WallTime = time.Since(start)
	<-statusDone
	res.Stdout = stdout.wait()
	res.Stderr = stderr.wait()
	res.Cgroup = cg.stats()
	res.OOMKilled = res.Cgroup.OOMKills > 0

	var st initStatus
	if len(statusData) > 0 && json.Unmarshal(statusData, &st) == nil {
		if st.Error != "" {
			return nil, fmt.Errorf("sandbox setup: %s", st.Error)
		}
		res.ExitCode, res.Signal, res.Usage = st.ExitCode, syscall.Signal(st.Signal), st.Usage
		return res, nil
	}
	// The init died before reporting (SIGKILLed after the grace period, or
	// OOM-killed itself): the command counts as killed by that signal.
	res.ExitCode, res.Signal = -1, syscall.SIGKILL
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		res.Signal = ws.Signal()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.Usage = usageFromSyscallRusage(ru)
	}
	return res, nil
}

func idMaps(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
