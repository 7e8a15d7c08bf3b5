package sandbox

import (
	"fmt"
	"net"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/internal/nettest"
	"github.com/paddock-build/paddock/sandbox/internal/probe/report"
)

// TestNetwork: by default the sandbox has its own network namespace with
// only lo, up: a listener on the host's 127.0.0.1 is unreachable while lo
// works inside. Without a network namespace in the spec (network on) the
// host's listener is reachable.
func TestNetwork(t *testing.T) {
	l := newTestLauncher(t, Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nettest.AcceptEach(t, ln, func(c net.Conn) { c.Close() })
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)

	t.Run("off", func(t *testing.T) {
		out := runSpec(t, l, DefaultSpec(testRootfs, testIDBase, "/bin/probe", "net", port), Request{})
		var r report.Net
		decodeJSON(t, out, &r)
		if r.HostConnect == "" {
			t.Error("host listener on 127.0.0.1 reachable from a sandbox with network off")
		}
		if !r.LoopbackOK {
			t.Errorf("loopback inside does not work: %s", r.LoopbackErr)
		}
		if len(r.Interfaces) != 1 || !strings.HasPrefix(r.Interfaces[0], "lo up") {
			t.Errorf("interfaces %q, want only lo, up", r.Interfaces)
		}
	})
	t.Run("on", func(t *testing.T) {
		spec := DefaultSpec(testRootfs, testIDBase, "/bin/probe", "net", port)
		var ns []specs.LinuxNamespace
		for _, n := range spec.Linux.Namespaces {
			if n.Type != specs.NetworkNamespace {
				ns = append(ns, n)
			}
		}
		spec.Linux.Namespaces = ns
		out := runSpec(t, l, spec, Request{})
		var r report.Net
		decodeJSON(t, out, &r)
		if r.HostConnect != "" {
			t.Errorf("network on, but host listener unreachable: %s", r.HostConnect)
		}
	})
}
