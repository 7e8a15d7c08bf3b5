package sandbox

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/paddock-build/paddock/internal/timerslack"
)

// ociRuntime runs bundles with an external OCI runtime binary:
// `<runtime> [args] --root DIR run --bundle BUNDLE ID`. The runtime creates
// the namespaces and cgroups itself, so Result.Cgroup and OOMKilled are not
// filled in, and Usage is the runtime process's own reaped tree as far as
// the runtime reaps its container (runc does). Debian 12's crun refuses a
// cgroup-hybrid host such as the one these tests run on; runc works.
type ociRuntime struct {
	opts Options
	root string
	seq  atomic.Uint64
}

func newOCIRuntime(opts Options) (*ociRuntime, error) {
	if _, err := os.Stat(opts.Runtime); err != nil {
		return nil, fmt.Errorf("oci runtime: %w", err)
	}
	root := opts.RuntimeRoot
	if root == "" {
		root = "/run/paddock-" + filepath.Base(opts.Runtime)
	}
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("oci runtime state dir: %w", err)
	}
	return &ociRuntime{opts: opts, root: root}, nil
}

func (o *ociRuntime) command(args ...string) *exec.Cmd {
	all := append(append([]string{}, o.opts.RuntimeArgs...), "--root", o.root)
	return exec.Command(o.opts.Runtime, append(all, args...)...)
}

func (o *ociRuntime) run(ctx context.Context, req Request) (*Result, error) {
	bundle, err := filepath.Abs(req.Bundle)
	if err != nil {
		return nil, err
	}
	if req.Spec != nil {
		// The runtime reads the spec from the bundle: write it there for
		// this run only (it may hold the command's environment).
		data, err := json.Marshal(req.Spec)
		if err != nil {
			return nil, err
		}
		config := filepath.Join(bundle, "config.json")
		if err := os.WriteFile(config, data, 0o600); err != nil {
			return nil, fmt.Errorf("write bundle config: %w", err)
		}
		defer os.Remove(config)
	}
	id := fmt.Sprintf("paddock-%d-%d", os.Getpid(), o.seq.Add(1))
	outFile, err := openOutput(req.Stdout)
	if err != nil {
		return nil, err
	}
	errFile, err := openOutput(req.Stderr)
	if err != nil {
		closeOutput(outFile)
		return nil, err
	}
	stdout, err := newOutputCapture()
	if err != nil {
		closeOutput(outFile)
		closeOutput(errFile)
		return nil, err
	}
	stderr, err := newOutputCapture()
	if err != nil {
		stdout.abort()
		closeOutput(outFile)
		closeOutput(errFile)
		return nil, err
	}
	start := time.Now()
	cmd, err := o.start(bundle, id, stdout, stderr)
	if err != nil {
		stdout.abort()
		stderr.abort()
		closeOutput(outFile)
		closeOutput(errFile)
		return nil, err
	}
	stdout.start(outFile, req.OutputLimit)
	stderr.start(errFile, req.OutputLimit)
	defer func() { _ = o.command("delete", "--force", id).Run() }()

	waitDone := make(chan struct{})
	go func() { _ = cmd.Wait(); close(waitDone) }()
	res := &Result{}
	awaitEnd(waitDone, req.Timeout, o.opts.KillGrace, ctx.Done(), nil,
		func() { _ = o.command("kill", "--all", id, "TERM").Run() },
		func() { _ = o.command("kill", "--all", id, "KILL").Run() }, res)
	res.WallTime = time.Since(start)
	res.Stdout = stdout.wait()
	res.Stderr = stderr.wait()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	switch {
	case ws.Signaled():
		res.ExitCode, res.Signal = -1, ws.Signal()
	case ws.ExitStatus() > 128 && ws.ExitStatus() < 128+65:
		// runc reports a container killed by signal N as 128+N.
		res.ExitCode, res.Signal = -1, syscall.Signal(ws.ExitStatus()-128)
	default:
		res.ExitCode = ws.ExitStatus()
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.Usage = usageFromRusage(ru)
	}
	return res, nil
}

// start starts `runtime run` for bundle as container id, its output to
// stdout and stderr. The runtime, and so the container, gets the kernel's
// default timer slack, not this process's (timerslack.Farm).
func (o *ociRuntime) start(bundle, id string, stdout, stderr *outputCapture) (*exec.Cmd, error) {
	cmd := o.command("run", "--bundle", bundle, id)
	cmd.Stdout, cmd.Stderr = stdout.w, stderr.w
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := timerslack.WithDefault(cmd.Start); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.opts.Runtime, err)
	}
	return cmd, nil
}

func (o *ociRuntime) close() error { return nil }
