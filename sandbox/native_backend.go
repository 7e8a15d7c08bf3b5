package sandbox

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/paddock-build/paddock/internal/wirecodec"
	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// nativeBackend talks to the spawner: requests on its stdin, results on
// its stdout (binary frames, spawn_protocol.go), matched by id. If the
// spawner dies (a crash, an OOM kill), Runs in flight fail and the next
// Run starts a new one.
type nativeBackend struct {
	opts Options
	host hostFacts // for planFor

	mu     sync.Mutex // guards cur, nextID, closed
	cur    *spawnerConn
	nextID uint64
	closed bool

	// wedgedAfter is how long past a Run's timeout and kill_grace (or past
	// its cancellation and kill_grace) the spawner may stay silent before
	// it is taken for wedged (spawnerWedgedAfter; tests shorten it).
	wedgedAfter time.Duration
}

// spawnerWedgedAfter: the spawner ends a sandbox at its timeout, and a
// cancelled one within kill_grace; a spawner silent this long past either
// is stuck (stopped, or blocked in the kernel), and is killed, which ends
// its sandboxes (their inits have its death signal) and fails their Runs
// with ErrSpawnerGone, retryable; the next Run starts a new one. Before,
// an outside probe's stopped spawner held every action without end, past
// its timeout, and its sandbox slot with it.
const spawnerWedgedAfter = 30 * time.Second

// spawnerConn is one spawner process.
type spawnerConn struct {
	cmd *exec.Cmd
	in  io.WriteCloser

	mu      sync.Mutex // guards in's writes, pending, err
	pending map[uint64]chan spawnResponse
	err     error         // set once the spawner is gone
	done    chan struct{} // closed then
}

func newNativeBackend(opts Options) (*nativeBackend, error) {
	filter, err := defaultSeccompFilter()
	if err != nil {
		return nil, err
	}
	b := &nativeBackend{opts: opts, host: hostFacts{lastCap: uint32(lastCap()), seccomp: seccompProgram(filter)}, wedgedAfter: spawnerWedgedAfter}
	c, err := startSpawner(opts)
	if err != nil {
		return nil, err
	}
	b.cur = c
	return b, nil
}

func startSpawner(opts Options) (*spawnerConn, error) {
	cmd := &exec.Cmd{
		Path:   opts.Executable,
		Args:   []string{spawnerArg0},
		Env:    []string{roleEnv + "=" + roleSpawner, fmt.Sprintf("%s=%d", warmEnv, opts.WarmInits), "GOMAXPROCS=1"},
		Stderr: os.Stderr,
		// The spawner dies with us; it then kills its sandboxes. It has
		// a process group of its own: a terminal's Ctrl-C (SIGINT to the
		// foreground group) must not kill it before its launcher closes
		// it, or the cgroups it holds would be left behind.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true},
	}
	return connectSpawner(cmd)
}

// connectSpawner starts cmd, a spawner, and reads its answers.
func connectSpawner(cmd *exec.Cmd) (*spawnerConn, error) {
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start sandbox spawner: %w", err)
	}
	c := &spawnerConn{
		cmd: cmd, in: in,
		pending: map[uint64]chan spawnResponse{}, done: make(chan struct{}),
	}
	go c.readLoop(out)
	return c, nil
}

// readLoop delivers the spawner's answers until its stdout ends. A reply
// that cannot be read means the two ends disagree: the spawner is killed
// (its sandboxes die with it) rather than left running unheard, and every
// Run in flight fails with ErrSpawnerGone.
func (c *spawnerConn) readLoop(out io.Reader) {
	in := bufio.NewReader(out)
	var frame []byte
	var bad error
	for {
		var err error
		if frame, err = readSpawnFrame(in, frame, "spawn response"); err != nil {
			if !errors.Is(err, io.EOF) {
				bad = err
			}
			break
		}
		resp, err := decodeSpawnResponse(frame)
		if err != nil {
			bad = err
			break
		}
		c.mu.Lock()
		ch := c.pending[resp.ID]
		delete(c.pending, resp.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	if bad != nil {
		_ = c.cmd.Process.Kill()
	}
	werr := c.cmd.Wait()
	c.mu.Lock()
	if bad != nil {
		c.err = fmt.Errorf("%w: %v (after an unreadable reply: %v)", ErrSpawnerGone, werr, bad)
	} else {
		c.err = fmt.Errorf("%w: %v", ErrSpawnerGone, werr)
	}
	// Dead before any Run in flight hears of it: a Run that follows
	// one that failed here starts a new spawner.
	close(c.done)
	for id, ch := range c.pending {
		ch <- spawnResponse{ID: id, Error: c.err.Error(), Kind: kindSpawnerGone}
		delete(c.pending, id)
	}
	c.mu.Unlock()
}

// send registers ch (if not nil) for req's answer and sends req. A
// request over maxSpawnFrame (a huge plan) is refused here, as a setup
// error of its Run: the spawner would take it for a broken stream.
func (c *spawnerConn) send(req spawnRequest, ch chan spawnResponse) error {
	frame := encodeSpawnRequest(&req)
	if n := len(frame) - wirecodec.FrameHeader; n > maxSpawnFrame {
		return fmt.Errorf("%w: the sandbox's plan takes %d bytes, over the limit of %d", ErrSetup, n, maxSpawnFrame)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return c.err
	}
	if ch != nil {
		c.pending[req.ID] = ch
	}
	if _, err := c.in.Write(frame); err != nil {
		delete(c.pending, req.ID)
		return fmt.Errorf("send to sandbox spawner: %w", err)
	}
	return nil
}

func (c *spawnerConn) dead() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// conn returns the live spawner, starting a new one if the last died.
func (b *nativeBackend) conn() (*spawnerConn, uint64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, 0, errors.New("sandbox launcher is closed")
	}
	if b.cur.dead() {
		// Its inits died with it (parent-death signal); their cgroups
		// are stale now.
		if err := cleanStaleCgroups(b.opts.CgroupParent); err != nil {
			return nil, 0, fmt.Errorf("clean stale sandbox cgroups: %w", err)
		}
		c, err := startSpawner(b.opts)
		if err != nil {
			return nil, 0, err
		}
		b.cur = c
	}
	b.nextID++
	return b.cur, b.nextID, nil
}

// spawnRequestFor plans req's sandbox: the spawner gets the init's plan,
// the clone parameters and the cgroup limits, nothing to parse.
func (b *nativeBackend) spawnRequestFor(req Request) (spawnRequest, error) {
	var bun *bundle
	var err error
	if req.Spec != nil {
		bun, err = bundleOf(req.Bundle, req.Spec)
	} else {
		bun, err = loadBundle(req.Bundle)
	}
	if err != nil {
		return spawnRequest{}, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	clone := cloneParamsFor(bun.spec)
	plan, err := planFor(bun, clone.Flags&syscall.CLONE_NEWNET != 0, b.host)
	if err != nil {
		return spawnRequest{}, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	return spawnRequest{
		Op: opRun, Plan: initplan.EncodePlan(plan), Clone: clone, Resources: bun.spec.Linux.Resources,
		Stdout: req.Stdout, Stderr: req.Stderr, OutputLimit: req.OutputLimit, Timeout: req.Timeout,
		KillGrace: b.opts.KillGrace, CgroupParent: b.opts.CgroupParent, Transient: req.Transient,
	}, nil
}

func (b *nativeBackend) run(ctx context.Context, req Request) (*Result, error) {
	sreq, err := b.spawnRequestFor(req)
	if err != nil {
		return nil, err
	}
	c, id, err := b.conn()
	if err != nil {
		return nil, err
	}
	sreq.ID = id
	ch := make(chan spawnResponse, 1)
	err = c.send(sreq, ch)
	if err != nil {
		return nil, err
	}
	cancel := ctx.Done()
	// Armed at the timeout (if any), rearmed at the cancellation.
	wedged := time.NewTimer(sreq.Timeout + b.opts.KillGrace + b.wedgedAfter)
	defer wedged.Stop()
	watchdog := wedged.C
	if sreq.Timeout <= 0 {
		wedged.Stop()
		watchdog = nil
	}
	for {
		select {
		case resp := <-ch:
			if resp.Error != "" {
				return nil, kindError(resp.Kind, resp.Errno, resp.Error)
			}
			return resp.Result, nil
		case <-cancel:
			cancel = nil
			op := opCancel
			if errors.Is(context.Cause(ctx), ErrKillNow) {
				op = opKill
			}
			_ = c.send(spawnRequest{Op: op, ID: id}, nil)
			wedged.Reset(b.opts.KillGrace + b.wedgedAfter)
			watchdog = wedged.C
		case <-watchdog:
			// Killed, the spawner's read loop answers every Run in
			// flight with ErrSpawnerGone, this one too.
			watchdog = nil
			_ = c.cmd.Process.Kill()
		}
	}
}

// spawnerPid is the current spawner's pid (for tests).
func (b *nativeBackend) spawnerPid() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cur.cmd.Process.Pid
}

func (b *nativeBackend) close() error {
	b.mu.Lock()
	b.closed = true
	c := b.cur
	b.mu.Unlock()
	err := c.in.Close()
	<-c.done
	// The spawner removes its cgroups as it exits; if it died instead
	// (killed, crashed), they are stale now: remove them too, so that a
	// graceful stop leaves no sandbox cgroup behind.
	if cerr := cleanStaleCgroups(b.opts.CgroupParent); cerr != nil {
		err = errors.Join(err, fmt.Errorf("remove sandbox cgroups: %w", cerr))
	}
	removeCgroupParent(b.opts.CgroupParent)
	return err
}
