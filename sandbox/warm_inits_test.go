package sandbox

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestTransientRunKeepsNoWarmInit: the spawner starts no warm init for the
// clone parameters of a transient Run (Request.Transient), and keeps
// WarmInits for those of any other.
func TestTransientRunKeepsNoWarmInit(t *testing.T) {
	l := newTestLauncher(t, Options{})
	// Its own kind of clone parameters: the host's network namespace.
	hostNet := testSpec("/bin/true")
	var ns []specs.LinuxNamespace
	for _, n := range hostNet.Linux.Namespaces {
		if n.Type != specs.NetworkNamespace {
			ns = append(ns, n)
		}
	}
	hostNet.Linux.Namespaces = ns
	for _, r := range []struct {
		spec      *specs.Spec
		transient bool
	}{{hostNet, true}, {testSpec("/bin/true"), false}} {
		res, err := l.Run(context.Background(), Request{Bundle: writeBundle(t, r.spec), Spec: r.spec, Transient: r.transient})
		if err != nil || res.ExitCode != 0 {
			t.Fatalf("Run (transient %v): %+v, %v", r.transient, res, err)
		}
	}
	// A refill after the transient Run would have started before the
	// second Run was sent, and that one's ends after it: once the second
	// kind's warm inits are there, the first kind's would be too.
	hostNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	count := func() (own, host int) {
		for _, p := range mappedProcesses(t) {
			if !isWarmInit(p.pid) || parentOf(parentOf(p.pid)) != os.Getpid() {
				continue
			}
			if n, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", p.pid)); n == hostNS {
				host++
			} else {
				own++
			}
		}
		return own, host
	}
	deadline := time.Now().Add(10 * time.Second)
	own, host := count()
	for own < defaultWarmInits && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // poll
		own, host = count()
	}
	if own != defaultWarmInits || host != 0 {
		t.Errorf("warm inits: %d with a network namespace of their own, %d with the host's (the transient Run's kind); want %d and 0",
			own, host, defaultWarmInits)
	}
}
