package sandbox

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// initProcess is a started init as the spawner sees it: reaped by a
// goroutine of its own, and signalled through a pidfd, so that a signal
// sent after the init has been reaped cannot reach another process that
// reused its pid.
//
// The reaper waits through the runtime's poller (a pidfd turns readable
// when its process exits) rather than in wait4. The spawner keeps a warm
// init waiting for each kind it runs; a thread blocked in a system call
// for each keeps the runtime's sysmon waking every 20 us to take its
// processor back, a cost paid on every sandbox.
type initProcess struct {
	pid    int
	pidfd  *os.File      // nil where pidfd_open is missing (Linux < 5.3)
	exited chan struct{} // closed once reaped; then status and usage are set
	status syscall.WaitStatus
	usage  syscall.Rusage
}

// watchInit starts reaping pid, a child of this process that nothing else
// waits for.
func watchInit(pid int) *initProcess {
	p := &initProcess{pid: pid, exited: make(chan struct{})}
	if fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK); err == nil {
		p.pidfd = os.NewFile(uintptr(fd), "pidfd")
	}
	go p.reap()
	return p
}

// wait4 reaps the init with flags; it reports whether it did.
func (p *initProcess) wait4(flags int) (bool, error) {
	for {
		wpid, err := syscall.Wait4(p.pid, &p.status, flags, &p.usage)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		return err == nil && wpid == p.pid, err
	}
}

func (p *initProcess) reap() {
	defer close(p.exited)
	if p.pidfd != nil {
		defer p.pidfd.Close()
		if rc, err := p.pidfd.SyscallConn(); err == nil {
			waited := rc.Read(func(uintptr) bool {
				done, err := p.wait4(syscall.WNOHANG)
				return done || err != nil
			})
			if waited == nil {
				return
			}
		}
	}
	_, _ = p.wait4(0)
}

// signal sends sig to the init unless it has been reaped.
func (p *initProcess) signal(sig syscall.Signal) {
	if p.pidfd == nil {
		if p.pid <= 0 { // kill(2) would signal a process group, or all
			return
		}
		select {
		case <-p.exited:
		default:
			_ = syscall.Kill(p.pid, sig)
		}
		return
	}
	rc, err := p.pidfd.SyscallConn()
	if err != nil {
		return
	}
	// Control holds the descriptor open against the reaper's Close.
	_ = rc.Control(func(fd uintptr) { _ = unix.PidfdSendSignal(int(fd), sig, nil, 0) })
}

// reapChild waits for child pid, which nothing else waits for, to exit,
// and reaps it.
func reapChild(pid int) syscall.WaitStatus {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); !errors.Is(err, syscall.EINTR) {
			return ws
		}
	}
}

// killAndReap kills child pid, which nothing else waits for, and reaps it.
func killAndReap(pid int) {
	_ = syscall.Kill(pid, syscall.SIGKILL)
	reapChild(pid)
}
