package main

import (
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// Bad flags are refused before any connection, with exit status 2 and a
// message naming the flag.
func TestRunFlagErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no command":               {[]string{"run"}, "no command"},
		"unknown API version":      {[]string{"run", "--api-version", "3.0", "--", "true"}, "--api-version"},
		"node properties with 2.0": {[]string{"run", "--api-version", "2.0", "--output-node-property", "mtime", "--", "true"}, "--output-node-property"},
		"bad platform pair":        {[]string{"run", "--platform", "nope", "--", "true"}, "NAME=VALUE"},
	} {
		t.Run(name, func(t *testing.T) {
			out, err := exec.Command(binary, tc.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), tc.want) {
				t.Fatalf("paddock %s: %v\n%s\nwant exit status 2 and a message naming %q", strings.Join(tc.args, " "), err, out, tc.want)
			}
		})
	}
}
