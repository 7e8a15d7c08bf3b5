package runner

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/clock"
)

// countingLister counts the directory listings, i.e. the plans made.
type countingLister struct {
	hostLister
	lists int
}

func (c *countingLister) list(dir string) ([]hostEntry, error) {
	c.lists++
	return c.hostLister.list(dir)
}

func newTestHostViews(t *testing.T, l hostLister, hidden ...string) *hostViews {
	t.Helper()
	return newHostViews(l, hidden, newSkeletons(t.TempDir()), []string{"/proc"})
}

// mustGet returns the rendered plan for irp and whether it was planned
// (not reused).
func mustGet(t *testing.T, c *hostViews, l *countingLister, irp string) (string, bool) {
	t.Helper()
	before := l.lists
	v, rootfs, done, err := c.get(irp)
	if err != nil {
		t.Fatal(err)
	}
	defer done()
	if _, err := os.Stat(rootfs); err != nil {
		t.Fatalf("skeleton: %v", err)
	}
	return render(v), l.lists != before
}

// TestHostViewsReuseUntilTheHostChanges: a plan is reused while nothing it
// was made from changed, and made again as soon as the host's top level
// gains a directory, a symlink there is retargeted, or a hidden path
// appears (which then stays hidden), however deep below missing parents.
func TestHostViewsReuseUntilTheHostChanges(t *testing.T) {
	host := newFakeHost("/bin -> usr/bin", "/usr", "/etc", "/proc", "/var", "/var/lib", "/var/lib/apt")
	l := &countingLister{hostLister: host}
	c := newTestHostViews(t, l, "/proc", "/var/lib/paddock", "/opt/x/secret")

	first, planned := mustGet(t, c, l, "/work")
	if !planned || !strings.Contains(first+"\n", "bind /var\n") {
		t.Fatalf("first plan (planned %v):\n%s", planned, first)
	}
	if again, planned := mustGet(t, c, l, "/work"); planned || again != first {
		t.Fatalf("unchanged host: planned again %v, plan\n%s", planned, again)
	}
	if _, planned := mustGet(t, c, l, "/src"); !planned {
		t.Fatal("another input root path reused /work's plan")
	}

	steps := []struct {
		name   string
		change func()
		want   []string // lines the new plan has
		absent []string // lines it must not have
	}{
		{"new top-level directory", func() { host.add("/data") },
			[]string{"bind /data"}, nil},
		{"symlink retargeted", func() { host["/bin"] = hostEntry{Name: "bin", Kind: kindSymlink, Target: "usr/sbin"} },
			[]string{"link /bin -> usr/sbin"}, []string{"link /bin -> usr/bin"}},
		{"hidden path appears", func() { host.add("/var/lib/paddock", "/var/lib/paddock/cas") },
			[]string{"dir /var", "dir /var/lib", "bind /var/lib/apt"}, []string{"bind /var\n", "paddock"}},
		{"parent of a hidden path appears", func() { host.add("/opt") },
			[]string{"bind /opt"}, nil},
		{"grandparent of a hidden path gains its parent", func() { host.add("/opt/x") },
			[]string{"bind /opt"}, nil},
		{"hidden path appears below", func() { host.add("/opt/x/secret", "/opt/x/lib") },
			[]string{"dir /opt", "dir /opt/x", "bind /opt/x/lib"}, []string{"bind /opt\n", "secret"}},
		{"top-level directory removed", func() { delete(host, "/data") },
			nil, []string{"/data"}},
	}
	for _, s := range steps {
		s.change()
		got, planned := mustGet(t, c, l, "/work")
		if !planned {
			t.Fatalf("%s: plan reused:\n%s", s.name, got)
		}
		for _, w := range s.want {
			if !strings.Contains(got+"\n", w) {
				t.Errorf("%s: plan lacks %q:\n%s", s.name, w, got)
			}
		}
		for _, a := range s.absent {
			if strings.Contains(got+"\n", a) {
				t.Errorf("%s: plan has %q:\n%s", s.name, a, got)
			}
		}
		if again, planned := mustGet(t, c, l, "/work"); planned || again != got {
			t.Errorf("%s: the new plan is not reused", s.name)
		}
	}
}

// TestHostViewsIgnoreWhatIsBelowAHiddenPath: a hidden path below another
// hidden path (up's data directory under /home, say) changes nothing in
// the view, so the directory holding it is no dependency of the plan:
// files coming and going beside it, as beside a farm's data directory in a
// busy working directory, do not make every action plan again. The plan
// is the same as without that hidden path.
func TestHostViewsIgnoreWhatIsBelowAHiddenPath(t *testing.T) {
	host := newFakeHost("/usr", "/etc", "/proc", "/home", "/home/dev", "/home/dev/ws", "/home/dev/ws/farm")
	l := &countingLister{hostLister: host}
	c := newTestHostViews(t, l, "/proc", "/home", "/home/dev/ws/farm")
	first, planned := mustGet(t, c, l, "/work")
	if !planned || strings.Contains(first, "/home") {
		t.Fatalf("first plan (planned %v):\n%s", planned, first)
	}
	host.add("/home/dev/ws/build.log!", "/home/dev/ws/out")
	delete(host, "/home/dev/ws/farm")
	if again, planned := mustGet(t, c, l, "/work"); planned || again != first {
		t.Errorf("after files changed beside a hidden path below /home: planned again %v, plan\n%s", planned, again)
	}
	without := newTestHostViews(t, l, "/proc", "/home")
	if plain, _ := mustGet(t, without, l, "/work"); plain != first {
		t.Errorf("plan with the nested hidden path:\n%s\nwithout it:\n%s", first, plain)
	}
}

// TestHostViewsRealDirectories: the same on the real filesystem, through
// osLister's stamps (inode and ctime): a hidden directory created after a
// plan is not in the next sandbox's view, and a directory read just after
// it changed is not trusted.
func TestHostViewsRealDirectories(t *testing.T) {
	base := quietTempDir(t)
	top := filepath.Join(base, "top")
	for _, d := range []string{"top/a", "top/b"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hidden := filepath.Join(top, "a", "hidden")
	l := &countingLister{hostLister: &stampsFrozenOutside{hostLister: osLister{}, dir: base}}
	// top is made a skeleton (a mount point below it); its entries are binds.
	c := newTestHostViews(t, l, hidden, "/proc", "/sys", "/dev")
	irp := filepath.Join(top, "work")
	if err := os.Mkdir(irp, 0o755); err != nil {
		t.Fatal(err)
	}

	// Just made: too fresh to be trusted, so planned every time.
	mustGet(t, c, l, irp)
	if _, planned := mustGet(t, c, l, irp); !planned {
		t.Fatal("a plan read from directories changed a moment ago was reused")
	}

	// Later (the clock moved on), the plan is kept and reused.
	waitTimestampTick(t, top) // so that a change from now on shows in ctime and mtime
	c.clock = clock.NewFake(time.Now().Add(time.Minute))
	first, _ := mustGet(t, c, l, irp)
	if !strings.Contains(first, "bind "+filepath.Join(top, "a")) {
		t.Fatalf("plan:\n%s", first)
	}
	if _, planned := mustGet(t, c, l, irp); planned {
		t.Fatal("unchanged directories: planned again")
	}

	if err := os.Mkdir(hidden, 0o755); err != nil {
		t.Fatal(err)
	}
	got, planned := mustGet(t, c, l, irp)
	if !planned {
		t.Fatal("hidden directory created: plan reused")
	}
	if strings.Contains(got+"\n", "bind "+filepath.Join(top, "a")+"\n") || strings.Contains(got, "hidden") ||
		!strings.Contains(got, "dir "+filepath.Join(top, "a")) {
		t.Errorf("after %s appeared, plan:\n%s", hidden, got)
	}

	// A new entry beside the input root's mount point.
	if err := os.Mkdir(filepath.Join(top, "c"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, planned := mustGet(t, c, l, irp); !planned || !strings.Contains(got, "bind "+filepath.Join(top, "c")) {
		t.Errorf("after %s/c appeared (planned %v), plan:\n%s", top, planned, got)
	}
}

// stampsFrozenOutside is a hostLister whose stamps of directories outside
// dir (and its subtree) are frozen at their first reading. A test on real
// directories asserts what changes in its own tree do to the plans; the
// ancestors of that tree (the package directory, the checkout, /tmp, /)
// change under it while other tests run, and would make any plan look
// stale.
type stampsFrozenOutside struct {
	hostLister
	dir string

	mu     sync.Mutex
	frozen map[string]dirStamp
}

func (s *stampsFrozenOutside) stamp(d string) dirStamp {
	if d == s.dir || strings.HasPrefix(d, s.dir+"/") {
		return s.hostLister.stamp(d)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.frozen[d]; ok {
		return st
	}
	if s.frozen == nil {
		s.frozen = map[string]dirStamp{}
	}
	st := s.hostLister.stamp(d)
	s.frozen[d] = st
	return st
}

// waitTimestampTick polls, with a deadline, until the filesystem's clock
// (the ctime it gives a freshly changed file) is past dir's ctime: the
// timestamps of a change made afterwards then differ from dir's.
func waitTimestampTick(t *testing.T, dir string) {
	t.Helper()
	var before syscall.Stat_t
	if err := syscall.Stat(dir, &before); err != nil {
		t.Fatal(err)
	}
	probe := filepath.Join(t.TempDir(), "tick")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := os.WriteFile(probe, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		var now syscall.Stat_t
		if err := syscall.Stat(probe, &now); err != nil {
			t.Fatal(err)
		}
		if now.Ctim.Nano() > before.Ctim.Nano() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the filesystem's clock did not move past %s's ctime", dir)
		}
		time.Sleep(time.Millisecond) // polling, bounded by the deadline
	}
}

// quietTempDir is a temporary directory whose parents change rarely: the
// package's own directory rather than /tmp, where other tests (and other
// processes) create and remove entries all the time, which would change
// the stamps a host view's plan is checked against.
func quietTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp(".", "hostview-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	return abs
}
