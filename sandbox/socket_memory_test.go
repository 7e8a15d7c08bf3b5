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

// TestTCPBuffersChargedToSandbox: socket buffers an action fills inside
// its own network namespace count against its memory limit. On cgroup v1
// they were charged to no cgroup: 40 loopback connections written to and
// never read queued 568 MiB of the host-wide tcp_mem, which the farm's
// own gRPC connections share, from a sandbox limited to 64 MiB.
func TestTCPBuffersChargedToSandbox(t *testing.T) {
	l := newTestLauncher(t, Options{})
	const limit, want = 64 << 20, 256 // bytes; MiB the probe tries to queue
	// Other tests on the machine move the host's figure a little.
	const slack = 32 << 20
	spec := testSpec("/bin/probe", "tcpflood", "40", strconv.Itoa(want))
	memLimit := int64(limit)
	spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &memLimit}
	before := hostSockMem(t, "TCP:")
	out := runSpec(t, l, spec, Request{Timeout: 60 * time.Second})
	if out.OOMKilled || out.TimedOut {
		// Killed for its buffers is contained too; nothing to decode.
		t.Logf("sandbox ended: OOM %v, timed out %v", out.OOMKilled, out.TimedOut)
		return
	}
	var r report.Flood
	decodeJSON(t, out, &r)
	t.Logf("queued %d MiB on %d connections (%s); host TCP mem %d -> %d pages",
		r.Queued>>20, r.Conns, r.FirstWriteErr, before, r.SockstatMem)
	if r.Conns != 40 {
		t.Fatalf("probe opened %d connections, want 40 (%s)", r.Conns, r.FirstWriteErr)
	}
	if r.Queued > limit+slack {
		t.Errorf("queued %d MiB unread in a sandbox limited to %d MiB", r.Queued>>20, limit>>20)
	}
	if grew := (r.SockstatMem - before) * int64(os.Getpagesize()); grew > limit+slack {
		t.Errorf("host TCP memory grew by %d MiB from a sandbox limited to %d MiB", grew>>20, limit>>20)
	}
	runsNormally(t, l)
}

// TestUDPBuffersChargedToSandbox: datagrams queued unread on sockets in
// the sandbox count against its memory limit too. (On v1 the kmem.tcp
// counter takes every socket's buffers once it is on, UDP's included;
// unlimited, 40 sockets held 317 MiB of the host's udp_mem.)
func TestUDPBuffersChargedToSandbox(t *testing.T) {
	l := newTestLauncher(t, Options{})
	const limit, slack = 64 << 20, 32 << 20
	spec := testSpec("/bin/probe", "udpflood", "40", "512")
	memLimit := int64(limit)
	spec.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &memLimit}
	before := hostSockMem(t, "UDP:")
	out := runSpec(t, l, spec, Request{Timeout: 60 * time.Second})
	if out.OOMKilled || out.TimedOut {
		t.Logf("sandbox ended: OOM %v, timed out %v", out.OOMKilled, out.TimedOut)
		return
	}
	var r report.Flood
	decodeJSON(t, out, &r)
	t.Logf("sent %d MiB to %d sockets (%s); host UDP mem %d -> %d pages",
		r.Queued>>20, r.Conns, r.FirstWriteErr, before, r.SockstatMem)
	if r.Conns != 40 {
		t.Fatalf("probe opened %d sockets, want 40 (%s)", r.Conns, r.FirstWriteErr)
	}
	if grew := (r.SockstatMem - before) * int64(os.Getpagesize()); grew > limit+slack {
		t.Errorf("host UDP memory grew by %d MiB from a sandbox limited to %d MiB", grew>>20, limit>>20)
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
