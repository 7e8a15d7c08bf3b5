package sandbox

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// The owner of a user namespace is the effective uid of the process that
// created it, and the kernel charges its per-user budgets (inotify
// instances and watches, POSIX message queue bytes, pending signals,
// locked memory) of everything inside to that owner, in the parent
// namespace, against the parent's limits. Created by the spawner as host
// root, every sandbox drew on root's single budget: one action holding 128
// inotify instances left host root, and every other sandbox, with EMFILE.
// So the spawner creates each sandbox's user namespace with the slot's own
// host uid (the one container root maps to) as its effective uid, for the
// clone only, on a locked thread: the budgets are then the slot's.

// namespaceOwner is the host uid that should own a sandbox's user
// namespace: the one its container root maps to; 0 (leave as is) when the
// clone makes no user namespace or root is not mapped.
func namespaceOwner(p cloneParams) uint32 {
	if p.Flags&syscall.CLONE_NEWUSER == 0 {
		return 0
	}
	for _, m := range p.UIDs {
		if m.ContainerID == 0 && m.Size > 0 {
			return m.HostID
		}
	}
	return 0
}

// actAsOwner makes the calling OS thread, and only it, run with effective
// uid owner until the returned func is called, keeping its capabilities
// effective (a change of effective uid from 0 clears them; the permitted
// set stays, since the real and saved uids remain 0, and is raised
// again). The thread stays locked meanwhile, so no other goroutine runs
// with these credentials and the runtime starts no thread from it. A
// no-op for owner 0 or when not running as root.
func actAsOwner(owner uint32) (func(), error) {
	if owner == 0 || os.Geteuid() != 0 {
		return func() {}, nil
	}
	runtime.LockOSThread()
	const keep = ^uintptr(0) // -1: leave the id as it is
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, uintptr(owner), keep); e != 0 {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("create the user namespace as uid %d: setresuid: %w", owner, e)
	}
	restore := func() {
		// Back to euid 0, which copies the permitted capabilities to the
		// effective set. With real and saved uid 0 this cannot fail; if
		// it did, the thread must not run anything else as it is.
		if _, _, e := unix.RawSyscall(unix.SYS_SETRESUID, keep, 0, keep); e != 0 {
			panic(fmt.Sprintf("sandbox: restore the spawner thread's uid: %v", e))
		}
		runtime.UnlockOSThread()
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	err := unix.Capget(&hdr, &data[0])
	if err == nil {
		data[0].Effective, data[1].Effective = data[0].Permitted, data[1].Permitted
		err = unix.Capset(&hdr, &data[0])
	}
	if err != nil {
		restore()
		return nil, fmt.Errorf("create the user namespace as uid %d: raise capabilities: %w", owner, err)
	}
	return restore, nil
}
