package sandbox

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/sandbox/internal/initbin"
)

// sealedInit copies the compiled init into a memfd and seals it, and
// returns the descriptor (close-on-exec; the kernel opens it by its
// /proc/self/fd path at each exec before closing it in the child).
//
// Every sandbox's pid 1 runs from this one file, so it must not be
// writable by anything, ever (CVE-2019-5736: a container that could write
// the binary its runtime executes owns every later container): the seals
// forbid writes, resizing, and any further change of the seals, for host
// root too. And the file exists on no filesystem, so no host path leads to
// it.
func sealedInit() (int, error) {
	if len(initbin.Binary) == 0 {
		return -1, fmt.Errorf("no compiled sandbox init for %s: use an external OCI runtime", runtime.GOARCH)
	}
	// MFD_EXEC: kernels with vm.memfd_noexec want it said; older kernels
	// do not know it.
	fd, err := unix.MemfdCreate("paddock-sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate("paddock-sandbox-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return -1, fmt.Errorf("memfd for the sandbox init: %w", err)
	}
	for b := initbin.Binary; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("write the sandbox init: %w", err)
		}
		b = b[n:]
	}
	seals := unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE
	// F_SEAL_EXEC (Linux 6.3) also freezes the mode bits.
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals|unix.F_SEAL_EXEC); err != nil {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("seal the sandbox init: %w", err)
		}
	}
	return fd, nil
}
