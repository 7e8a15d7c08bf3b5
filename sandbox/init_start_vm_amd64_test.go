//go:build linux && amd64

package sandbox

import (
	"testing"
	"unsafe"
)

// The assembly (init_start_vm_amd64.s) reads vmChild at fixed offsets and
// passes cloneArgs to the kernel by size: a field moved here must move
// there too.
func TestVMChildLayout(t *testing.T) {
	var c vmChild
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"syncFd", unsafe.Offsetof(c.syncFd), 0},
		{"syncW", unsafe.Offsetof(c.syncW), 8},
		{"errFd", unsafe.Offsetof(c.errFd), 16},
		{"path", unsafe.Offsetof(c.path), 24},
		{"argv", unsafe.Offsetof(c.argv), 32},
		{"envv", unsafe.Offsetof(c.envv), 40},
		{"fds", unsafe.Offsetof(c.fds), 48},
		{"oldMask", unsafe.Offsetof(c.oldMask), 88},
	} {
		if f.got != f.want {
			t.Errorf("vmChild.%s at offset %d, the assembly reads it at %d", f.name, f.got, f.want)
		}
	}
	var a cloneArgs
	if unsafe.Sizeof(a) != 88 {
		t.Errorf("cloneArgs is %d bytes, the kernel's struct clone_args (as passed) 88", unsafe.Sizeof(a))
	}
	for _, f := range []struct {
		name      string
		got, want uintptr
	}{
		{"flags", unsafe.Offsetof(a.flags), 0},
		{"exitSignal", unsafe.Offsetof(a.exitSignal), 32},
		{"stack", unsafe.Offsetof(a.stack), 40},
		{"stackSize", unsafe.Offsetof(a.stackSize), 48},
		{"cgroup", unsafe.Offsetof(a.cgroup), 80},
	} {
		if f.got != f.want {
			t.Errorf("cloneArgs.%s at offset %d, struct clone_args has it at %d", f.name, f.got, f.want)
		}
	}
}
