package sandbox

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// fsIocFiemap is FS_IOC_FIEMAP, _IOWR('f', 11, struct fiemap).
const fsIocFiemap = 0xC020660B

// flushed writes 256 KiB to f, closes it and reports whether that put the
// bytes on their way to the disk: whether the file's first extent has a
// block (FIEMAP) rather than still being delayed allocation
// (FIEMAP_EXTENT_DELALLOC), as written bytes stay until writeback runs.
func flushed(t *testing.T, f *os.File) bool {
	t.Helper()
	if _, err := f.Write(bytes.Repeat([]byte("x"), 256<<10)); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	// struct fiemap (32 bytes) and one struct fiemap_extent (56).
	buf := make([]byte, 32+56)
	binary.NativeEndian.PutUint64(buf[8:], ^uint64(0)) // fm_length: all
	binary.NativeEndian.PutUint32(buf[24:], 1)         // fm_extent_count
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, g.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0]))); errno != 0 {
		t.Skipf("FIEMAP: %v", errno)
	}
	if binary.NativeEndian.Uint32(buf[20:]) == 0 {
		t.Fatal("FIEMAP found no extent in a file of 256 KiB")
	}
	const delalloc = 0x4 // FIEMAP_EXTENT_DELALLOC
	return binary.NativeEndian.Uint32(buf[32+40:])&delalloc == 0
}

// TestOutputIsNotFlushedAtClose checks that a captured stream's file,
// truncated for the action as build directories are reused, is not written
// to the disk when the capture closes it (ext4's auto_da_alloc would), on
// a file system where that happens to a plain truncated file.
func TestOutputIsNotFlushedAtClose(t *testing.T) {
	dir := t.TempDir()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil || st.Type != unix.EXT4_SUPER_MAGIC {
		t.Skip("the temporary directory is not on ext4")
	}
	path := filepath.Join(dir, "stdout")
	if err := os.WriteFile(path, []byte("the previous action's output"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The premise: a file truncated and written is flushed at close.
	plain, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !flushed(t, plain) {
		t.Skip("closing a truncated file does not flush it here: nothing to avoid (auto_da_alloc off?)")
	}
	f, err := openOutput(path)
	if err != nil {
		t.Fatal(err)
	}
	if flushed(t, f) {
		t.Error("closing a captured stream's file flushed it to the disk")
	}
	if b, err := os.ReadFile(path); err != nil || len(b) != 256<<10 {
		t.Errorf("the file holds %d bytes (%v), want the 256 KiB written", len(b), err)
	}
}

// A command can write to /dev/stdout and /dev/stderr by name, as genrules
// and test scripts do (`echo x >> /dev/stderr`), and through
// /proc/self/fd: the streams are reopened by the sandbox's own user.
// Before, the launcher's pipes were mode 0600 and every such open failed
// with EACCES.
func TestCommandReopensItsOutputStreams(t *testing.T) {
	l := newTestLauncher(t, Options{})
	out := runSpec(t, l, testSpec("/bin/sh", "-c", "echo a > /dev/stdout && echo b >> /dev/stderr && echo c > /proc/self/fd/1 && echo d | tee /dev/stderr > /dev/null"), Request{})
	if out.ExitCode != 0 || out.stdout != "a\nc\n" || out.stderr != "b\nd\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 0, \"a\\nc\\n\", \"b\\nd\\n\"", out.ExitCode, out.stdout, out.stderr)
	}
}
