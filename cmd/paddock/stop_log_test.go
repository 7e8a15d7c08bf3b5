package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/testfs"
)

// TestSplitRolesLogTheirStop: each split role, stopped by a signal, logs
// one INFO line when it begins stopping, naming the signal, and one when
// it has stopped, with how long that took, so an operator can tell a clean
// stop from a crash in its log. Before, they stopped without a word.
func TestSplitRolesLogTheirStop(t *testing.T) {
	dir := t.TempDir()
	storage := startRole(t, "storage serving", "storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage"))
	scheduler := startRole(t, "scheduler serving", "scheduler", "--listen", "127.0.0.1:0", "--storage", storage.addr(t),
		"--journal-dir", filepath.Join(dir, "journal"))
	roles := []*loggedRole{scheduler}
	if os.Geteuid() == 0 {
		// The runner needs root; the worker its socket.
		rdir := testfs.SearchableTempDir(t, "", "paddock-stop-log")
		sock := filepath.Join(rdir, "runner.sock")
		runner := startRole(t, "runner serving", "runner", "--socket", sock, "--state", filepath.Join(rdir, "state"))
		worker := startRole(t, "worker running", "worker", "--scheduler", scheduler.addr(t), "--storage", storage.addr(t),
			"--runner", sock, "--dir", filepath.Join(rdir, "worker"))
		roles = []*loggedRole{worker, runner, scheduler}
	} else {
		t.Log("not root: the runner and the worker are not checked")
	}
	roles = append(roles, storage)
	for i, r := range roles {
		sig := syscall.SIGTERM
		if i == 0 {
			sig = syscall.SIGINT
		}
		r.stopAndCheck(t, sig)
	}
}

// loggedRole is a role started by startRole: its stderr is collected
// line by line.
type loggedRole struct {
	role   string
	cmd    *exec.Cmd
	out    *bufio.Scanner
	listen string // the address read from out
	mu     sync.Mutex
	lines  []string
	done   chan struct{} // closed when stderr ends
}

// startRole starts `paddock ROLE ARGS` and waits (up to a minute) for a
// log line containing ready.
func startRole(t *testing.T, ready, role string, args ...string) *loggedRole {
	t.Helper()
	return startRoleIn(t, "", ready, role, args...)
}

// startRoleIn is startRole in the working directory dir ("": the test's).
func startRoleIn(t *testing.T, dir, ready, role string, args ...string) *loggedRole {
	t.Helper()
	r := &loggedRole{role: role, done: make(chan struct{})}
	r.cmd = exec.Command(binary, append([]string{role, "--http-listen", ""}, args...)...)
	r.cmd.Dir = dir
	stderr, _ := r.cmd.StderrPipe()
	stdout, _ := r.cmd.StdoutPipe()
	r.out = bufio.NewScanner(stdout)
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.cmd.Process.Kill(); _ = r.cmd.Wait() }) // may have stopped, and been waited for, already
	seen := make(chan struct{})
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
			if strings.Contains(sc.Text(), ready) && seen != nil {
				close(seen)
				seen = nil
			}
		}
	}()
	select {
	case <-seen:
	case <-r.done:
		t.Fatalf("paddock %s exited before logging %q:\n%s", role, ready, r.log())
	case <-time.After(time.Minute):
		t.Fatalf("paddock %s did not log %q within a minute:\n%s", role, ready, r.log())
	}
	return r
}

// addr is the address the role printed on stdout ("listening on").
func (r *loggedRole) addr(t *testing.T) string {
	t.Helper()
	if r.listen != "" {
		return r.listen
	}
	for r.out.Scan() {
		if _, a, ok := strings.Cut(r.out.Text(), " listening on "); ok {
			r.listen = a
			return a
		}
	}
	t.Fatalf("paddock %s printed no address", r.role)
	return ""
}

func (r *loggedRole) log() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.lines, "\n")
}

// stopAndCheck sends sig, waits for a clean exit, and checks the two lines.
func (r *loggedRole) stopAndCheck(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("paddock %s: sending %v: %v\n%s", r.role, sig, err, r.log())
	}
	// Read stderr to its end before Wait, which closes the pipe: waited
	// first, the role's last line ("stopped") could be cut off unread.
	// The minute bounds a child holding stderr open, not a speed.
	select {
	case <-r.done:
	case <-time.After(time.Minute):
	}
	err := r.cmd.Wait()
	<-r.done
	log := r.log()
	if err != nil {
		t.Errorf("paddock %s did not stop cleanly on %v: %v\n%s", r.role, sig, err, log)
	}
	name := map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[sig]
	stopping := `level=INFO msg="` + r.role + ` stopping" signal=` + name
	stopped := `level=INFO msg="` + r.role + ` stopped" took=`
	i, j := strings.Index(log, stopping), strings.Index(log, stopped)
	if i < 0 || j < i {
		t.Errorf("paddock %s on %s: want a line with %q, then one with %q; its log:\n%s", r.role, name, stopping, stopped, log)
	}
	if strings.Count(log, " stopping\"") != 1 || strings.Count(log, " stopped\"") != 1 {
		t.Errorf("paddock %s: want one stopping and one stopped line; its log:\n%s", r.role, log)
	}
}
