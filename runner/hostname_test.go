package runner

import (
	"strings"
	"testing"
)

// The sandbox's hostname is localhost, which the host's /etc/hosts names,
// as Bazel's own sandbox names it (--sandbox_fake_hostname): it had been
// "sandbox", which resolved nowhere, and Java's
// InetAddress.getLocalHost() threw UnknownHostException in every remote
// action (outside probe), where it worked locally.
func TestTheHostnameResolves(t *testing.T) {
	e := newTestEnv(t, nil)
	a := e.newAction(t)
	mustSucceed(t, a, e.run(t, a.request("/bin/sh", "-c", `getent hosts "$(hostname)"`)))
	if out, _ := a.output(t); !strings.Contains(out, "127.0.0.1") && !strings.Contains(out, "::1") {
		t.Fatalf("getent hosts $(hostname): %q, want a loopback address", out)
	}
}
