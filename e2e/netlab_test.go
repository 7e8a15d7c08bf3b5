package e2e

import (
	"crypto/rand"
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

// netlab is a set of network namespaces the test creates, one per
// machine, each with an eth0 on one switch: a bridge in a namespace of its
// own, so nothing is added to the host's network. Everything is removed
// when the test ends.
type netlab struct {
	t      *testing.T
	prefix string   // unique per lab: namespace names are global
	hosts  []string // namespace names, switch first
	next   int      // last address octet given out
}

// labSubnet is the /24 the lab's machines live on (only inside the lab's
// namespaces, so it cannot clash with the host's).
const labSubnet = "10.200.0."

func newNetlab(t *testing.T) *netlab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2) to build the network namespaces")
	}
	l := &netlab{t: t, prefix: "pdk" + strings.ToLower(rand.Text()[:6]), next: 0}
	t.Cleanup(l.remove)
	l.ip("netns", "add", l.prefix+"-sw")
	l.hosts = append(l.hosts, l.prefix+"-sw")
	l.ip("-n", l.prefix+"-sw", "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.prefix+"-sw", "link", "set", "br0", "up")
	return l
}

// machine adds a namespace named name with eth0 on the switch and returns
// its address.
func (l *netlab) machine(name string) string {
	l.t.Helper()
	l.next++
	ns, port, addr := l.prefix+"-"+name, fmt.Sprintf("p%d", l.next), fmt.Sprintf("%s%d", labSubnet, l.next)
	l.ip("netns", "add", ns)
	l.hosts = append(l.hosts, ns)
	sw := l.prefix + "-sw"
	l.ip("-n", sw, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
	l.ip("-n", sw, "link", "set", port, "master", "br0", "up")
	l.ip("-n", ns, "addr", "add", addr+"/24", "dev", "eth0")
	l.ip("-n", ns, "link", "set", "eth0", "up")
	l.ip("-n", ns, "link", "set", "lo", "up")
	return addr
}

// enter is the command prefix that runs a program in machine name's
// network namespace (only that: the mounts stay the host's, cgroups
// included, unlike `ip netns exec`, which remounts /sys).
func (l *netlab) enter(name string) []string {
	return []string{"nsenter", "--net=/run/netns/" + l.prefix + "-" + name}
}

func (l *netlab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veths go with them).
func (l *netlab) remove() {
	for i := len(l.hosts) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", l.hosts[i]).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v\n%s", l.hosts[i], err, out)
		}
	}
}
