package sandbox

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// The default seccomp filter is classic BPF assembled here by hand, so the
// binary needs neither cgo nor libseccomp. It allows everything except:
// syscalls that reconfigure the kernel or mounts, escape or inspect other
// processes (ptrace, process_vm_*, kcmp is allowed), load code into the
// kernel (bpf, modules, kexec), reach the keyring, or create namespaces
// (clone/unshare with CLONE_NEW* flags; clone3 answers ENOSYS so libcs fall
// back to clone, where the flags can be inspected). ioctl(TIOCSTI) and
// ioctl(TIOCLINUX) are refused so a sandbox cannot push input into a
// terminal. socket(AF_VSOCK) is refused because a network namespace does
// not confine vsock: on a VM with a virtio-vsock device it would reach the
// hypervisor host's services past the sandbox's empty network (Docker's
// default profile refuses it for the same reason). io_setup answers
// ENOSYS, as on a kernel without native AIO (libaio's users fall back,
// glibc's POSIX AIO uses threads): its contexts come from one
// machine-wide budget, fs.aio-max-nr, that binds root too, and one action
// took it all, so that no other action, nor the host, could set one up.
// memfd_secret answers ENOSYS too (as where secretmem is off): it takes
// pages out of the kernel's direct map, which Docker's profile does not
// allow either. fallocate with FALLOC_FL_KEEP_SIZE (and not punching a
// hole, which frees blocks) answers EOPNOTSUPP, as on a filesystem without
// it (callers fall back to writing): it reserves blocks past the file's
// size, which RLIMIT_FSIZE does not count, so one call took a whole
// disk, past the action's quota, before the disk guard's next look.
// Other architectures and the x32 ABI are refused outright.

// deniedSyscalls answer EPERM unconditionally. Constant table.
var deniedSyscalls = []uint32{
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_MOVE_MOUNT, unix.SYS_OPEN_TREE,
	unix.SYS_FSOPEN, unix.SYS_FSCONFIG, unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
	unix.SYS_BPF, unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD, unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE,
	unix.SYS_DELETE_MODULE,
	unix.SYS_REBOOT, unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_SETNS, unix.SYS_PERF_EVENT_OPEN,
	unix.SYS_USERFAULTFD, unix.SYS_OPEN_BY_HANDLE_AT, unix.SYS_ACCT, unix.SYS_SETTIMEOFDAY,
	unix.SYS_CLOCK_SETTIME, unix.SYS_CLOCK_ADJTIME, unix.SYS_ADJTIMEX,
	unix.SYS_QUOTACTL, unix.SYS_QUOTACTL_FD, unix.SYS_SYSLOG, unix.SYS_VHANGUP,
	unix.SYS_LOOKUP_DCOOKIE, unix.SYS_NFSSERVCTL, unix.SYS_FANOTIFY_INIT,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_PIDFD_GETFD,
}

const (
	// cloneNSFlags are the CLONE_NEW* flags clone(2) accepts (CLONE_NEWTIME
	// shares its bit with the exit signal there).
	cloneNSFlags = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET
	unshareNSFlags = cloneNSFlags | unix.CLONE_NEWTIME

	seccompDataNr   = 0
	seccompDataArch = 4
	seccompDataArg0 = 16 // low 32 bits of args[0] on little-endian
	seccompDataArg1 = 24
)

// bpfProgram is a tiny assembler: instructions whose jump targets are
// labels, resolved by assemble.
type bpfProgram struct {
	insns  []unix.SockFilter
	labels map[string]int
	fixups []bpfFixup
}

type bpfFixup struct {
	at     int
	jt, jf string // label names; "" means fall through
}

func (p *bpfProgram) label(name string) { p.labels[name] = len(p.insns) }

func (p *bpfProgram) stmt(code uint16, k uint32) {
	p.insns = append(p.insns, unix.SockFilter{Code: code, K: k})
}

// jump emits a conditional jump to label jt if the condition holds, to jf
// otherwise ("" = next instruction).
func (p *bpfProgram) jump(code uint16, k uint32, jt, jf string) {
	p.fixups = append(p.fixups, bpfFixup{at: len(p.insns), jt: jt, jf: jf})
	p.insns = append(p.insns, unix.SockFilter{Code: code, K: k})
}

func (p *bpfProgram) assemble() ([]unix.SockFilter, error) {
	for _, f := range p.fixups {
		rel := func(l string) (uint8, error) {
			if l == "" {
				return 0, nil
			}
			t, ok := p.labels[l]
			if !ok {
				return 0, fmt.Errorf("seccomp: undefined label %s", l)
			}
			d := t - f.at - 1
			if d < 0 || d > 255 {
				return 0, fmt.Errorf("seccomp: jump to %s out of range (%d)", l, d)
			}
			return uint8(d), nil
		}
		var err error
		if p.insns[f.at].Jt, err = rel(f.jt); err != nil {
			return nil, err
		}
		if p.insns[f.at].Jf, err = rel(f.jf); err != nil {
			return nil, err
		}
	}
	return p.insns, nil
}

// defaultSeccompFilter assembles the default filter for x86_64.
func defaultSeccompFilter() ([]unix.SockFilter, error) {
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jge  = unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	p := &bpfProgram{labels: map[string]int{}}
	p.stmt(ldW, seccompDataArch)
	p.jump(jeq, unix.AUDIT_ARCH_X86_64, "", "kill")
	p.stmt(ldW, seccompDataNr)
	p.jump(jge, 0x40000000, "kill", "") // x32 ABI
	for _, nr := range append(deniedSyscalls, archDeniedSyscalls...) {
		p.jump(jeq, nr, "eperm", "")
	}
	p.jump(jeq, unix.SYS_CLONE, "clone", "")
	p.jump(jeq, unix.SYS_UNSHARE, "unshare", "")
	p.jump(jeq, unix.SYS_IOCTL, "ioctl", "")
	p.jump(jeq, unix.SYS_CLONE3, "enosys", "")
	p.jump(jeq, unix.SYS_IO_SETUP, "enosys", "")
	p.jump(jeq, unix.SYS_MEMFD_SECRET, "enosys", "")
	p.jump(jeq, unix.SYS_SOCKET, "socket", "")
	p.jump(jeq, unix.SYS_FALLOCATE, "fallocate", "")
	p.stmt(ret, unix.SECCOMP_RET_ALLOW)

	p.label("fallocate")
	p.stmt(ldW, seccompDataArg1) // mode
	p.jump(jset, unix.FALLOC_FL_KEEP_SIZE, "", "allow")
	p.jump(jset, unix.FALLOC_FL_PUNCH_HOLE, "allow", "eopnotsupp")

	p.label("socket")
	p.stmt(ldW, seccompDataArg0)
	p.jump(jeq, unix.AF_VSOCK, "eperm", "allow")

	p.label("clone")
	p.stmt(ldW, seccompDataArg0)
	p.jump(jset, cloneNSFlags, "eperm", "allow")
	p.label("unshare")
	p.stmt(ldW, seccompDataArg0)
	p.jump(jset, unshareNSFlags, "eperm", "allow")
	p.label("ioctl")
	p.stmt(ldW, seccompDataArg1)
	p.jump(jeq, unix.TIOCSTI, "eperm", "")
	p.jump(jeq, unix.TIOCLINUX, "eperm", "allow")

	p.label("allow")
	p.stmt(ret, unix.SECCOMP_RET_ALLOW)
	p.label("eperm")
	p.stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.EPERM))
	p.label("enosys")
	p.stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS))
	p.label("eopnotsupp")
	p.stmt(ret, unix.SECCOMP_RET_ERRNO|uint32(unix.EOPNOTSUPP))
	p.label("kill")
	p.stmt(ret, unix.SECCOMP_RET_KILL_PROCESS)
	return p.assemble()
}

// seccompProgram returns filter in the kernel's struct sock_filter layout
// (little-endian, 8 bytes per instruction), as the init's plan carries it.
func seccompProgram(filter []unix.SockFilter) []byte {
	out := make([]byte, 0, 8*len(filter))
	for _, f := range filter {
		out = append(out, byte(f.Code), byte(f.Code>>8), f.Jt, f.Jf,
			byte(f.K), byte(f.K>>8), byte(f.K>>16), byte(f.K>>24))
	}
	return out
}
