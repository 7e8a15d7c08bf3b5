// Package testdisk gives tests small filesystems of their own (tmpfs), to
// fill for real: a full disk, in bytes or in inodes, deterministically.
//
// Every such mount has the source Source, so that a test which counts the
// host's mounts to find leaks (sandbox.TestStressNoLeaks) can leave out
// those that tests of other packages, running at the same time, make.
package testdisk

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// Source is the source of every mount Mount makes, as /proc/PID/mountinfo
// shows it.
const Source = "paddock-testdisk"

// Mount mounts a tmpfs of size bytes and at most inodes inodes (0: the
// kernel's default) on a new directory in t.TempDir() and returns it.
func Mount(t testing.TB, size int64, inodes int) string {
	t.Helper()
	return MountAt(t, filepath.Join(t.TempDir(), "disk"), size, inodes)
}

// MountAt is Mount on dir, which it creates (its parent must exist): for
// a test that needs the directory somewhere in particular. It is
// unmounted when the test ends (cleanups registered after this call run
// before the unmount). Tests that are not run as root are skipped.
func MountAt(t testing.TB, dir string, size int64, inodes int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small filesystem")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%d,mode=0755", size)
	if inodes > 0 {
		opts += fmt.Sprintf(",nr_inodes=%d", inodes)
	}
	if err := unix.Mount(Source, dir, "tmpfs", 0, opts); err != nil {
		t.Fatalf("mount a small tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// Fill writes a file in dir until its filesystem has no byte left.
func Fill(t testing.TB, dir string) {
	t.Helper()
	f, err := os.CreateTemp(dir, "filler-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return
		}
	}
}

// FillInodes creates empty files in a new directory in dir until its
// filesystem has no inode left, and returns what removes them again.
func FillInodes(t testing.TB, dir string) (free func()) {
	t.Helper()
	filler, err := os.MkdirTemp(dir, "filler-")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		f, err := os.Create(filepath.Join(filler, strconv.Itoa(i)))
		if errors.Is(err, syscall.ENOSPC) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	return func() {
		if err := os.RemoveAll(filler); err != nil {
			t.Fatal(err)
		}
	}
}

// IsTestMount reports whether a line of /proc/PID/mountinfo is of a
// mount Mount made.
func IsTestMount(mountinfoLine string) bool {
	_, after, ok := strings.Cut(mountinfoLine, " - ")
	if !ok {
		return false
	}
	fields := strings.Fields(after) // fstype, source, super options
	return len(fields) >= 2 && fields[1] == Source
}
