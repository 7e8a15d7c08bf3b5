package smallfile

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// A config, policy or token file is read whole when it is a small regular
// file, and refused, without blocking or growing, when it is a FIFO, a
// device or too large.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "ok.yaml")
	if err := os.WriteFile(ok, []byte("version: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(ok, "config"); err != nil || string(b) != "version: 1\n" {
		t.Fatalf("a small file: %q, %v", b, err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big")
	if err := os.WriteFile(big, make([]byte, MaxFileBytes+1), 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/dev/zero": "not a regular file", big: "larger than", filepath.Join(dir, "missing"): "no such file"} {
		if _, err := Read(path, "config"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error saying %q", path, err, want)
		}
	}
	// Opening a FIFO for reading blocks until a writer comes; the file is
	// opened non-blocking first, so that it is refused at once.
	done := make(chan error, 1)
	go func() { _, err := Read(fifo, "config"); done <- err }()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Fatalf("a FIFO: %v, want refused", err)
	}
}
