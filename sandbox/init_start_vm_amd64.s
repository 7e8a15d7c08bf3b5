//go:build linux && amd64

#include "textflag.h"

// System calls (x86-64).
#define SYS_read		0
#define SYS_write		1
#define SYS_close		3
#define SYS_rt_sigaction	13
#define SYS_rt_sigprocmask	14
#define SYS_execve		59
#define SYS_setuid		105
#define SYS_setgid		106
#define SYS_setgroups		116
#define SYS_prctl		157
#define SYS_exit_group		231
#define SYS_dup3		292
#define SYS_clone3		435

// Offsets in vmChild (init_start_vm_amd64.go).
#define C_SYNC		0
#define C_SYNCW		8
#define C_ERR		16
#define C_PATH		24
#define C_ARGV		32
#define C_ENVV		40
#define C_FDS		48
#define C_OLDMASK	88

// A struct sigaction for SIG_DFL, a full and an empty signal set.
DATA sigdfl<>+0(SB)/8, $0
DATA sigdfl<>+8(SB)/8, $0
DATA sigdfl<>+16(SB)/8, $0
DATA sigdfl<>+24(SB)/8, $0
GLOBL sigdfl<>(SB), RODATA|NOPTR, $32
DATA allsigs<>+0(SB)/8, $-1
GLOBL allsigs<>(SB), RODATA|NOPTR, $8
DATA nosigs<>+0(SB)/8, $0
GLOBL nosigs<>(SB), RODATA|NOPTR, $8

// func clone3VM(args *cloneArgs, child *vmChild) (pid uintptr, errno uintptr)
//
// The child shares this process's memory and starts on the stack args
// names, so it must not return into Go code: it runs the code below
// label child to its exec (or exit), with every signal blocked until just
// before the exec and every handler reset to the default first, so that
// no Go signal handler ever runs in it. It only reads memory (the vmChild,
// the strings it points to), and writes nothing but its own stack.
TEXT ·clone3VM(SB),NOSPLIT|NOFRAME,$0-32
	MOVQ	child+8(FP), R12
	// Block every signal on this thread; the child inherits the mask.
	MOVQ	$2, DI			// SIG_SETMASK
	LEAQ	allsigs<>(SB), SI
	LEAQ	C_OLDMASK(R12), DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL
	MOVQ	args+0(FP), DI
	MOVQ	$88, SI			// sizeof(struct clone_args)
	MOVQ	$SYS_clone3, AX
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	MOVQ	AX, R13
	// Parent: restore the mask.
	MOVQ	$2, DI
	LEAQ	C_OLDMASK(R12), SI
	MOVQ	$0, DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL
	CMPQ	R13, $0xfffffffffffff001
	JLS	ok
	NEGQ	R13
	MOVQ	$0, pid+16(FP)
	MOVQ	R13, errno+24(FP)
	RET
ok:
	MOVQ	R13, pid+16(FP)
	MOVQ	$0, errno+24(FP)
	RET

child:
	// On the child's own stack; R12 (kept by the kernel) is the vmChild.
	SUBQ	$16, SP
	// Our copy of the sync pipe's write end, so that EOF can come.
	MOVQ	C_SYNCW(R12), DI
	MOVQ	$SYS_close, AX
	SYSCALL
	// Wait until the parent has written the id maps; EOF: it gave up.
	MOVQ	C_SYNC(R12), DI
	MOVQ	SP, SI
	MOVQ	$1, DX
	MOVQ	$SYS_read, AX
	SYSCALL
	CMPQ	AX, $1
	JNE	quit
	// Become container root: setgroups(0, NULL), setgid(0), setuid(0).
	MOVQ	$0, DI
	MOVQ	$0, SI
	MOVQ	$SYS_setgroups, AX
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	MOVQ	$0, DI
	MOVQ	$SYS_setgid, AX
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	MOVQ	$0, DI
	MOVQ	$SYS_setuid, AX
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	// prctl(PR_SET_PDEATHSIG, SIGKILL): the init dies with the thread
	// that started it.
	MOVQ	$1, DI
	MOVQ	$9, SI
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$SYS_prctl, AX
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	// dup3(fds[i], i, 0) for i in 0..4 (clears close-on-exec).
	MOVQ	$0, BX
dups:
	MOVQ	C_FDS(R12)(BX*8), DI
	MOVQ	BX, SI
	MOVQ	$0, DX
	MOVQ	$SYS_dup3, AX
	SYSCALL
	CMPQ	AX, $0
	JLT	fail
	INCQ	BX
	CMPQ	BX, $5
	JLT	dups
	// Every handler back to SIG_DFL (SIGKILL and SIGSTOP refuse: fine),
	// then unblock every signal.
	MOVQ	$1, BX
handlers:
	MOVQ	BX, DI
	LEAQ	sigdfl<>(SB), SI
	MOVQ	$0, DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigaction, AX
	SYSCALL
	INCQ	BX
	CMPQ	BX, $65
	JLT	handlers
	MOVQ	$2, DI
	LEAQ	nosigs<>(SB), SI
	MOVQ	$0, DX
	MOVQ	$8, R10
	MOVQ	$SYS_rt_sigprocmask, AX
	SYSCALL
	CMPQ	AX, $0
	JNE	fail
	MOVQ	C_PATH(R12), DI
	MOVQ	C_ARGV(R12), SI
	MOVQ	C_ENVV(R12), DX
	MOVQ	$SYS_execve, AX
	SYSCALL
fail:
	// AX is -errno: report it and exit.
	NEGQ	AX
	MOVQ	AX, 0(SP)
	MOVQ	C_ERR(R12), DI
	MOVQ	SP, SI
	MOVQ	$8, DX
	MOVQ	$SYS_write, AX
	SYSCALL
	MOVQ	$253, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
quit:
	MOVQ	$254, DI
	MOVQ	$SYS_exit_group, AX
	SYSCALL
	JMP	quit
