package sandbox

import "golang.org/x/sys/unix"

// archDeniedSyscalls are denied like deniedSyscalls but exist only on
// x86_64 (legacy module, port I/O and sysctl calls); kept apart so the
// package still compiles for other architectures.
var archDeniedSyscalls = []uint32{
	unix.SYS_CREATE_MODULE, unix.SYS_GET_KERNEL_SYMS, unix.SYS_QUERY_MODULE,
	unix.SYS_IOPL, unix.SYS_IOPERM, unix.SYS_USELIB, unix.SYS__SYSCTL,
}
