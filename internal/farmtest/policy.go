package farmtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/paddock-build/paddock/auth"
)

// Policy compiles an auth policy from its YAML text, written to a file
// as the roles read it; the test fails where the policy is refused.
func Policy(t testing.TB, text string) *auth.Policy {
	t.Helper()
	path := filepath.Join(t.TempDir(), "auth.yaml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := auth.LoadPolicy(path)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
