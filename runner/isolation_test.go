package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/testfs"
)

// TestHostRootView: without an image the sandbox sees the host's root
// read-only, but not the runner's state directory, not the other input
// roots beside its own, and not the configured hidden paths (the CAS
// here) — even where the host shows them (/var/tmp is not hidden by
// default, so this test lives there).
func TestHostRootView(t *testing.T) {
	requireRoot(t)
	base := testfs.SearchableTempDir(t, "/var/tmp", "paddock-runner-test-")
	cas := filepath.Join(base, "cas")
	build := filepath.Join(base, "build")
	e := newTestEnvIn(t, base, func(c *Config) { c.HostHiddenPaths = append(c.HostHiddenPaths, cas, build) })
	for _, f := range []string{filepath.Join(cas, "blob"), filepath.Join(e.build, "other", "secret")} {
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a := e.newAction(t)
	script := fmt.Sprintf(`
for p in %[1]s/build %[1]s/build/other/secret %[1]s/cas/blob %[1]s/state %[2]s; do
  if [ -e "$p" ]; then echo "visible: $p"; fi
done
ls -A %[1]s
[ -x /usr/bin/env ] || echo "no /usr/bin/env"
[ -d /var/tmp ] || echo "no /var/tmp"
touch /etc/paddock-test 2>/dev/null && echo "wrote /etc"
touch /usr/paddock-test 2>/dev/null && echo "wrote /usr"
mkdir /newdir 2>/dev/null && echo "wrote /"
echo ok > /tmp/scratch && cat /tmp/scratch`, base, a.root)
	resp := e.run(t, a.request("/bin/sh", "-c", script))
	mustSucceed(t, a, resp)
	// base itself is a skeleton directory: its build, state and cas
	// entries are hidden, and nothing else was there.
	if out, stderr := a.output(t); out != "ok\n" || resp.StatusCode != 0 {
		t.Errorf("sandbox saw:\n%s\nstderr %q\nwant only the tmpfs /tmp write to succeed and nothing hidden visible", out, stderr)
	}
	for _, p := range []string{"/etc/paddock-test", "/usr/paddock-test", "/newdir"} {
		if _, err := os.Lstat(p); err == nil {
			os.RemoveAll(p)
			t.Errorf("the sandbox created %s on the host", p)
		}
	}
}

// TestUsers: dockerUser picks the uid:gid inside, the input root's
// directories are given to its host ids (so it can create outputs), and
// dockerRunAsRoot overrides a non-root default user.
func TestUsers(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DefaultUser = "1234:1234" })
	for _, tc := range []struct {
		props []*runnerpb.Property
		uid   uint32
	}{
		{nil, 1234},
		{[]*runnerpb.Property{{Name: "dockerUser", Value: "1000:1001"}}, 1000},
		{[]*runnerpb.Property{{Name: "dockerRunAsRoot", Value: "true"}}, 0},
	} {
		a := e.newAction(t)
		req := a.request("/bin/sh", "-c", "/usr/bin/id -u; /usr/bin/id -g; echo x > made")
		req.Platform = tc.props
		resp := e.run(t, req)
		mustSucceed(t, a, resp)
		gid := tc.uid
		if tc.uid == 1000 {
			gid = 1001
		}
		if out, _ := a.output(t); out != fmt.Sprintf("%d\n%d\n", tc.uid, gid) {
			t.Errorf("%v: id inside = %q, want %d:%d", tc.props, out, tc.uid, gid)
		}
		st, err := os.Stat(filepath.Join(a.root, "made"))
		if err != nil {
			t.Fatalf("%v: output not created: %v", tc.props, err)
		}
		if got := st.Sys().(*syscall.Stat_t); got.Uid != testIDBase+tc.uid || got.Gid != testIDBase+gid {
			t.Errorf("%v: output owned by %d:%d on the host, want %d:%d", tc.props, got.Uid, got.Gid, testIDBase+tc.uid, testIDBase+gid)
		}
	}
}

// TestConcurrentSandboxesGetDistinctIDs: while one action runs, another
// gets the next id slot, so their files belong to different host uids.
func TestConcurrentSandboxesGetDistinctIDs(t *testing.T) {
	e := newTestEnv(t, nil)
	first := e.newAction(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.client.Run(ctx, first.request("/bin/sh", "-c", "touch mine; exec sleep 600"))
		done <- err
	}()
	waitFor(t, "the first action to create its file", func() bool {
		_, err := os.Stat(filepath.Join(first.root, "mine"))
		return err == nil
	})
	second := e.newAction(t)
	mustSucceed(t, second, e.run(t, second.request("/bin/sh", "-c", "touch mine")))
	cancel()
	<-done
	owner := func(a *action) uint32 {
		st, err := os.Stat(filepath.Join(a.root, "mine"))
		if err != nil {
			t.Fatal(err)
		}
		return st.Sys().(*syscall.Stat_t).Uid
	}
	if o1, o2 := owner(first), owner(second); o1 != testIDBase || o2 != testIDBase+65536 {
		t.Errorf("concurrent sandboxes' files owned by %d and %d, want %d and %d", o1, o2, testIDBase, testIDBase+65536)
	}
	if strings.Contains(fmt.Sprint(slotProcesses(t)), "sleep") {
		waitFor(t, "the cancelled sandbox to be gone", func() bool { return len(slotProcesses(t)) == 0 })
	}
}

// TestInputRootMustBeHidden: a host-root action whose input root is not
// below a hidden path is refused, since its sandbox would see the other
// actions' input roots; UNAVAILABLE, the worker's misconfiguration, so
// that the scheduler retries it on another worker (FAILED_PRECONDITION
// failed the action, and Bazel does not retry it).
func TestInputRootMustBeHidden(t *testing.T) {
	requireRoot(t)
	base := testfs.SearchableTempDir(t, "/var/tmp", "paddock-runner-test-") // the host view does not hide /var/tmp by default
	e := newTestEnvIn(t, base, nil)
	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/true"))
	if codes.Code(resp.StatusCode) != codes.Unavailable || !strings.Contains(resp.StatusMessage, "host_hidden_paths") {
		t.Errorf("status %s %q, want UNAVAILABLE naming host_hidden_paths", codes.Code(resp.StatusCode), resp.StatusMessage)
	}
}

// TestPrivilegedWhenAllowed: with allow_privileged, dockerPrivileged=true
// runs with every capability — inside the user namespace: container root
// is still an unprivileged host uid, so its outputs belong to that uid.
func TestPrivilegedWhenAllowed(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.AllowPrivileged = true })
	a := e.newAction(t)
	req := a.request("/bin/sh", "-c", "grep CapEff /proc/self/status; touch made")
	req.Platform = []*runnerpb.Property{{Name: "dockerPrivileged", Value: "true"}}
	resp := e.run(t, req)
	mustSucceed(t, a, resp)
	out, _ := a.output(t)
	if !strings.HasPrefix(out, "CapEff:\t000001ffffffffff") {
		t.Errorf("privileged capabilities: %q, want all 41", out)
	}
	st, err := os.Stat(filepath.Join(a.root, "made"))
	if err != nil || st.Sys().(*syscall.Stat_t).Uid != testIDBase {
		t.Errorf("privileged output: %v; want it owned by host uid %d, not root", err, testIDBase)
	}
}

// TestSlotsExhausted: beyond max_sandboxes running at once, Run answers
// UNAVAILABLE (the worker runs fewer actions than the runner has slots);
// the slot is free again once the running action ends.
func TestSlotsExhausted(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.MaxSandboxes = 1 })
	first := e.newAction(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		// Canceled below: how it ends is not what this test checks.
		_, _ = e.client.Run(ctx, first.request("/bin/sh", "-c", "touch started; exec sleep 600"))
	}()
	waitFor(t, "the first action to start", func() bool {
		_, err := os.Stat(filepath.Join(first.root, "started"))
		return err == nil
	})
	second := e.newAction(t)
	if resp := e.run(t, second.request("/bin/true")); codes.Code(resp.StatusCode) != codes.Unavailable || !strings.Contains(resp.StatusMessage, "max_sandboxes") {
		t.Errorf("second action while the only slot is busy: %s %q, want UNAVAILABLE", codes.Code(resp.StatusCode), resp.StatusMessage)
	}
	cancel()
	<-done
	waitFor(t, "the slot to be released", func() bool {
		return codes.Code(e.run(t, second.request("/bin/true")).StatusCode) == codes.OK
	})
}
