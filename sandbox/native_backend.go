package sandbox

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
)

// nativeBackend talks to the spawner: requests as JSON lines on its stdin,
// results on its stdout, matched by id.
type nativeBackend struct {
	opts Options
	cmd  *exec.Cmd
	in   io.WriteCloser

	mu      sync.Mutex // guards enc, nextID, pending, err
	enc     *json.Encoder
	nextID  uint64
	pending map[uint64]chan spawnResponse
	err     error // set once the spawner is gone
	done    chan struct{}
}

func newNativeBackend(opts Options) (*nativeBackend, error) {
	cmd := &exec.Cmd{
		Path:   opts.Executable,
		Args:   []string{spawnerArg0},
		Env:    []string{roleEnv + "=" + roleSpawner, fmt.Sprintf("%s=%d", warmEnv, opts.WarmInits)},
		Stderr: os.Stderr,
		// The spawner dies with us; it then kills its sandboxes.
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
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
	b := &nativeBackend{
		opts: opts, cmd: cmd, in: in, enc: json.NewEncoder(in),
		pending: map[uint64]chan spawnResponse{}, done: make(chan struct{}),
	}
	go b.readLoop(out)
	return b, nil
}

func (b *nativeBackend) readLoop(out io.Reader) {
	dec := json.NewDecoder(bufio.NewReader(out))
	for {
		var resp spawnResponse
		if err := dec.Decode(&resp); err != nil {
			break
		}
		b.mu.Lock()
		ch := b.pending[resp.ID]
		delete(b.pending, resp.ID)
		b.mu.Unlock()
		if ch != nil {
			ch <- resp
		}
	}
	werr := b.cmd.Wait()
	b.mu.Lock()
	b.err = fmt.Errorf("sandbox spawner exited: %v", werr)
	for id, ch := range b.pending {
		ch <- spawnResponse{ID: id, Error: b.err.Error()}
		delete(b.pending, id)
	}
	b.mu.Unlock()
	close(b.done)
}

func (b *nativeBackend) send(req spawnRequest) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	return b.enc.Encode(req)
}

func (b *nativeBackend) run(ctx context.Context, req Request) (*Result, error) {
	ch := make(chan spawnResponse, 1)
	b.mu.Lock()
	if b.err != nil {
		err := b.err
		b.mu.Unlock()
		return nil, err
	}
	b.nextID++
	id := b.nextID
	b.pending[id] = ch
	err := b.enc.Encode(spawnRequest{
		Op: "run", ID: id, Bundle: req.Bundle, Stdout: req.Stdout, Stderr: req.Stderr,
		OutputLimit: req.OutputLimit, Timeout: req.Timeout, KillGrace: b.opts.KillGrace,
		CgroupParent: b.opts.CgroupParent,
	})
	if err != nil {
		delete(b.pending, id)
		b.mu.Unlock()
		return nil, fmt.Errorf("send to sandbox spawner: %w", err)
	}
	b.mu.Unlock()

	cancel := ctx.Done()
	for {
		select {
		case resp := <-ch:
			if resp.Error != "" {
				return nil, errors.New(resp.Error)
			}
			return resp.Result, nil
		case <-cancel:
			cancel = nil
			_ = b.send(spawnRequest{Op: "cancel", ID: id})
		}
	}
}

func (b *nativeBackend) close() error {
	err := b.in.Close()
	<-b.done
	removeCgroupParent(b.opts.CgroupParent)
	return err
}
