package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A live socket is refused and left alone; a stale one (its listener
// gone) is removed; a file that is not a socket is refused.
func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	lis, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	if err := RemoveStale(live); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a live socket: %v, want refused as in use", err)
	}
	if _, err := os.Lstat(live); err != nil {
		t.Fatalf("the live socket was removed: %v", err)
	}

	stale := filepath.Join(dir, "stale.sock")
	l2, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	l2.(*net.UnixListener).SetUnlinkOnClose(false)
	l2.Close()
	if err := RemoveStale(stale); err != nil {
		t.Fatalf("a stale socket: %v", err)
	}
	if _, err := os.Lstat(stale); !os.IsNotExist(err) {
		t.Fatalf("the stale socket is still there: %v", err)
	}

	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveStale(file); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("a regular file: %v, want refused", err)
	}
	if err := RemoveStale(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("a missing path: %v", err)
	}
}
