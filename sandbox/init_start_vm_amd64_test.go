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
	checkOffsets(t, "vmChild", "the assembly reads it", []fieldOffset{
		{"syncFd", unsafe.Offsetof(c.syncFd), 0},
		{"syncW", unsafe.Offsetof(c.syncW), 8},
		{"errFd", unsafe.Offsetof(c.errFd), 16},
		{"path", unsafe.Offsetof(c.path), 24},
		{"argv", unsafe.Offsetof(c.argv), 32},
		{"envv", unsafe.Offsetof(c.envv), 40},
		{"fds", unsafe.Offsetof(c.fds), 48},
		{"oldMask", unsafe.Offsetof(c.oldMask), 88},
	})
	var a cloneArgs
	if unsafe.Sizeof(a) != 88 {
		t.Errorf("cloneArgs is %d bytes, the kernel's struct clone_args (as passed) 88", unsafe.Sizeof(a))
	}
	checkOffsets(t, "cloneArgs", "struct clone_args has it", []fieldOffset{
		{"flags", unsafe.Offsetof(a.flags), 0},
		{"exitSignal", unsafe.Offsetof(a.exitSignal), 32},
		{"stack", unsafe.Offsetof(a.stack), 40},
		{"stackSize", unsafe.Offsetof(a.stackSize), 48},
		{"cgroup", unsafe.Offsetof(a.cgroup), 80},
	})
}

type fieldOffset struct {
	name      string
	got, want uintptr
}

// checkOffsets reports each field of typ not at the offset where reader
// expects it.
func checkOffsets(t *testing.T, typ, reader string, fields []fieldOffset) {
	t.Helper()
	for _, f := range fields {
		if f.got != f.want {
			t.Errorf("%s.%s at offset %d, %s at %d", typ, f.name, f.got, reader, f.want)
		}
	}
}
