package auth_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/auth"
)

// TestWarnIfReadableByAll: a secret file that every user can read (so can
// an action on the host's root) is named in a warning with the fix; one
// only its owner (or group) reads, or a missing one, is not.
func TestWarnIfReadableByAll(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		mode os.FileMode
		warn bool
	}{
		"0644": {0o644, true},
		"0604": {0o604, true},
		"0640": {0o640, false},
		"0600": {0o600, false},
	} {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, "key-"+name)
			if err := os.WriteFile(p, []byte("secret"), tc.mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, tc.mode); err != nil { // past the umask
				t.Fatal(err)
			}
			var buf bytes.Buffer
			auth.WarnIfReadableByAll(slog.New(slog.NewTextHandler(&buf, nil)), "TLS private key", p)
			got := buf.String()
			if warned := strings.Contains(got, p) && strings.Contains(got, "chmod o-r"); warned != tc.warn {
				t.Fatalf("mode %v: log %q, want a warning naming the file: %v", tc.mode, got, tc.warn)
			}
		})
	}
	var buf bytes.Buffer
	auth.WarnIfReadableByAll(slog.New(slog.NewTextHandler(&buf, nil)), "TLS private key", filepath.Join(dir, "missing"))
	if buf.Len() != 0 {
		t.Fatalf("a missing file warned: %q", buf.String())
	}
}
