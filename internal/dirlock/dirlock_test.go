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
// file it points to is left as it was.
func TestLockFileIsNotFollowed(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(dir, dirlock.FileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := dirlock.Lock(dir, "data directory"); err == nil {
		t.Fatal("a symlinked lock file was accepted")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the symlink's target was written: %q", b)
	}
	if err := os.Remove(filepath.Join(dir, dirlock.FileName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(victim, filepath.Join(dir, dirlock.FileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := dirlock.Lock(dir, "data directory"); err == nil {
		t.Fatal("a hard link to another file as the lock file was accepted")
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious" {
		t.Fatalf("the hard link's file was written: %q", b)
	}
	if err := os.Remove(filepath.Join(dir, dirlock.FileName)); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, dirlock.FileName), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := dirlock.Lock(dir, "data directory"); err == nil {
		t.Fatal("a directory in place of the lock file was accepted")
	}
}
