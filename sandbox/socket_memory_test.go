package sandbox

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/sandbox/internal/probe/report"
)

// floodLimit is the memory limit of the flooding sandboxes, and
// floodSlack what other tests on the machine move the host's figures by.
const floodLimit, floodSlack = 64 << 20, 32 << 20

// flood runs the probe's mode (tcpflood, udpflood) on 40 sockets trying
// to queue mib MiB, in a sandbox limited to floodLimit, and returns its
// report and the host's buffer pages of proto before it. ok is false when
// the sandbox was killed for its buffers: contained too, nothing to decode.
func flood(t *testing.T, l *Launcher, mode, mib, proto string) (r report.Flood, before int64, ok bool) {
	t.Helper()
	spec := testSpec("/bin/probe", mode, "40", mib)
	memLimit := int64(floodLimit)
	spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &memLimit}
	before = hostSockMem(t, proto)
	out := runSpec(t, l, spec, Request{Timeout: 60 * time.Second})
	if out.OOMKilled || out.TimedOut {
		t.Logf("sandbox ended: OOM %v, timed out %v", out.OOMKilled, out.TimedOut)
		return r, before, false
	}
	decodeJSON(t, out, &r)
	t.Logf("%s: queued %d MiB on %d sockets (%s); host memory %d -> %d pages",
		mode, r.Queued>>20, r.Conns, r.FirstWriteErr, before, r.SockstatMem)
	if r.Conns != 40 {
		t.Fatalf("probe opened %d sockets, want 40 (%s)", r.Conns, r.FirstWriteErr)
	}
	return r, before, true
}

// TestTCPBuffersChargedToSandbox: socket buffers an action fills inside
// its own network namespace count against its memory limit. On cgroup v1
// they were charged to no cgroup: 40 loopback connections written to and
// never read queued 568 MiB of the host-wide tcp_mem, which the farm's
// own gRPC connections share, from a sandbox limited to 64 MiB.
func TestTCPBuffersChargedToSandbox(t *testing.T) {
	l := newTestLauncher(t, Options{})
	r, before, ok := flood(t, l, "tcpflood", "256", "TCP:")
	if !ok {
		return
	}
	if r.Queued > floodLimit+floodSlack {
		t.Errorf("queued %d MiB unread in a sandbox limited to %d MiB", r.Queued>>20, floodLimit>>20)
	}
	if grew := (r.SockstatMem - before) * int64(os.Getpagesize()); grew > floodLimit+floodSlack {
		t.Errorf("host TCP memory grew by %d MiB from a sandbox limited to %d MiB", grew>>20, floodLimit>>20)
	}
	runsNormally(t, l)
}

// TestUDPBuffersChargedToSandbox: datagrams queued unread on sockets in
// the sandbox count against its memory limit too. (On v1 the kmem.tcp
// counter takes every socket's buffers once it is on, UDP's included;
// unlimited, 40 sockets held 317 MiB of the host's udp_mem.)
func TestUDPBuffersChargedToSandbox(t *testing.T) {
	l := newTestLauncher(t, Options{})
	r, before, ok := flood(t, l, "udpflood", "512", "UDP:")
	if !ok {
		return
	}
	if grew := (r.SockstatMem - before) * int64(os.Getpagesize()); grew > floodLimit+floodSlack {
		t.Errorf("host UDP memory grew by %d MiB from a sandbox limited to %d MiB", grew>>20, floodLimit>>20)
	}
	runsNormally(t, l)
}

// hostSockMem is the host's buffer pages of proto ("TCP:", "UDP:") from
// /proc/net/sockstat.
func hostSockMem(t *testing.T, proto string) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == proto {
			for i := 1; i+1 < len(f); i++ {
				if f[i] == "mem" {
					v, err := strconv.ParseInt(f[i+1], 10, 64)
					if err != nil {
						t.Fatalf("sockstat %q: %v", line, err)
					}
					return v
				}
			}
		}
	}
	t.Fatalf("no %s mem in /proc/net/sockstat: %q", proto, b)
	return 0
}
