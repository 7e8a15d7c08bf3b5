package dirlock_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/internal/dirlock"
)

// TestSecondLockIsRefused: while one holder has the directory, another
// Lock (another open file, as another process would have) is refused
// naming the directory and the holder's pid; after release it succeeds.
func TestSecondLockIsRefused(t *testing.T) {
	dir := t.TempDir()
	release, err := dirlock.Lock(dir, "data directory")
	if err != nil {
		t.Fatal(err)
	}
	_, err = dirlock.Lock(dir, "data directory")
	if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second lock: %v; want a refusal naming %s and pid %d", err, dir, os.Getpid())
	}
	release()
	again, err := dirlock.Lock(dir, "data directory")
	if err != nil {
		t.Fatalf("lock after release: %v", err)
	}
	again()
}

// TestLockOfAnotherProcess: a lock held by another process (flock(1))
// refuses Lock; the lock dies with that process.
func TestLockOfAnotherProcess(t *testing.T) {
	if _, err := exec.LookPath("flock"); err != nil {
		t.Skip("no flock(1)")
	}
	dir := t.TempDir()
	cmd := exec.Command("flock", dir+"/"+dirlock.FileName, "sh", "-c", "echo locked; cat >/dev/null")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 7)
	if _, err := out.Read(buf); err != nil { // "locked": flock(1) holds it
		t.Fatal(err)
	}
	if _, err := dirlock.Lock(dir, "journal directory"); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("lock held by another process: %v, want refused", err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	release, err := dirlock.Lock(dir, "journal directory")
	if err != nil {
		t.Fatalf("lock after the other process ended: %v", err)
	}
	release()
}

// TestLockFileIsNotFollowed: a symlink or a hard link planted as the lock
// file is not followed (the lock file is truncated and written as root), and the
// file it points to is left as it was; a directory in its place is refused too.
func TestLockFileIsNotFollowed(t *testing.T) {
	for _, tc := range []struct {
		what  string // what is planted as the lock file, for the failure messages
		plant func(victim, lockFile string) error
	}{
		{"a symlink", os.Symlink},
		{"a hard link to another file", os.Link},
		{"a directory", func(_, lockFile string) error { return os.Mkdir(lockFile, 0o700) }},
	} {
		t.Run(tc.what, func(t *testing.T) {
			dir := t.TempDir()
			victim := filepath.Join(t.TempDir(), "victim")
			if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.plant(victim, filepath.Join(dir, dirlock.FileName)); err != nil {
				t.Fatal(err)
			}
			if _, err := dirlock.Lock(dir, "data directory"); err == nil {
				t.Fatalf("%s in place of the lock file was accepted", tc.what)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious" {
				t.Fatalf("the file behind %s was written: %q", tc.what, b)
			}
		})
	}
}
