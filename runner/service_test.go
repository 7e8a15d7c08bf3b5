package runner

import (
	"testing"

	"github.com/paddock-build/paddock/api/runnerpb"
)

// TestEnvironmentIsExactlyTheCommands: env inside prints exactly the
// Command's variables, in order, and nothing else (no PATH, HOME, ...).
func TestEnvironmentIsExactlyTheCommands(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	req := a.request("/usr/bin/env")
	req.EnvironmentVariables = []*runnerpb.EnvironmentVariable{{Name: "B", Value: "two words"}, {Name: "A", Value: "1"}}
	resp := e.run(t, req)
	mustSucceed(t, a, resp)
	if out, _ := a.output(t); out != "B=two words\nA=1\n" {
		t.Errorf("environment inside = %q, want exactly the Command's", out)
	}
}
