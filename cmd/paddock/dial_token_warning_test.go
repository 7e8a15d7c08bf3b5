package main

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDialTokenFileReadableByAllIsWarned: a role's --dial-token-file that
// every user can read is warned about, as a TLS key is (a tenant's action
// on the host's root read one and wrote another tenant's action cache as
// the worker); one only its owner reads is not, and a client's
// --token-file is its user's business.
func TestDialTokenFileReadableByAllIsWarned(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		prefix string
		mode   os.FileMode
		warned bool
	}{
		{"dial-", 0o644, true},
		{"dial-", 0o600, false},
		{"", 0o644, false},
	} {
		p := filepath.Join(dir, "token")
		if err := os.WriteFile(p, []byte("secret-token"), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		d := dialSecurity{tokenFile: p, prefix: tc.prefix}
		if _, err := d.dialOptions(slog.New(slog.NewTextHandler(&buf, nil))); err != nil {
			t.Fatal(err)
		}
		warned := strings.Contains(buf.String(), "readable by every user") && strings.Contains(buf.String(), "--"+tc.prefix+"token-file")
		if warned != tc.warned || strings.Contains(buf.String(), "secret-token") {
			t.Errorf("--%stoken-file of mode %v: log %q, want warned=%v and no token", tc.prefix, tc.mode, buf.String(), tc.warned)
		}
	}
}
