package runner

import (
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeHost is a host filesystem for planHostView: path -> entry; a
// directory's entries are the paths directly below it.
type fakeHost map[string]hostEntry

func (f fakeHost) list(dir string) ([]hostEntry, error) {
	if e, ok := f[dir]; !ok || e.Kind != kindDir {
		return nil, errors.New("not a directory")
	}
	var out []hostEntry
	for p, e := range f {
		if p != "/" && path.Dir(p) == dir {
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func (f fakeHost) kind(p string) (entryKind, bool) {
	e, ok := f[p]
	return e.Kind, ok
}

// stamp stands for a directory's inode and ctime: a hash of its entries,
// which changes whenever a name below it is added, removed or changed.
func (f fakeHost) stamp(dir string) dirStamp {
	ents, err := f.list(dir)
	if err != nil {
		return dirStamp{}
	}
	h := fnv.New64()
	for _, e := range ents {
		fmt.Fprintf(h, "%q %d %q\n", e.Name, e.Kind, e.Target)
	}
	return dirStamp{Exists: true, Ino: h.Sum64()}
}

// add adds entries as newFakeHost reads them.
func (f fakeHost) add(spec ...string) {
	for p, e := range newFakeHost(spec...) {
		if p != "/" {
			f[p] = e
		}
	}
}

func newFakeHost(spec ...string) fakeHost {
	f := fakeHost{"/": {Name: "/", Kind: kindDir}}
	for _, s := range spec {
		p, target, isLink := strings.Cut(s, " -> ")
		e := hostEntry{Name: path.Base(p), Kind: kindDir}
		switch {
		case isLink:
			e.Kind, e.Target = kindSymlink, target
		case strings.HasSuffix(p, "!"):
			p = strings.TrimSuffix(p, "!")
			e.Name, e.Kind = path.Base(p), kindFile
		case strings.HasSuffix(p, "="):
			p = strings.TrimSuffix(p, "=")
			e.Name, e.Kind = path.Base(p), kindOther
		}
		f[p] = e
	}
	return f
}

// render lists a view as lines: "dir P", "file P", "link P -> T", "bind P".
func render(v *hostView) string {
	var lines []string
	for _, e := range v.Skeleton {
		switch e.Kind {
		case kindDir:
			lines = append(lines, "dir "+e.Path)
		case kindFile:
			lines = append(lines, "file "+e.Path)
		case kindSymlink:
			lines = append(lines, "link "+e.Path+" -> "+e.Target)
		}
	}
	for _, b := range v.Binds {
		if b.Source != b.Destination || strings.Join(b.Options, ",") != "rbind,ro,nosuid,nodev" {
			lines = append(lines, fmt.Sprintf("BAD BIND %+v", b))
		}
		lines = append(lines, "bind "+b.Destination)
	}
	return strings.Join(lines, "\n")
}

// TestPlanHostView: the skeleton has the sandbox's mount points and the
// directories on the way to hidden paths; everything else at those levels
// is bound read-only (directories and files) or copied (symlinks); hidden
// paths, and sockets or devices, are not there at all.
func TestPlanHostView(t *testing.T) {
	host := newFakeHost(
		"/bin -> usr/bin", "/usr", "/usr/bin", "/etc", "/etc/passwd!", "/proc", "/tmp", "/run", "/run/x.sock=",
		"/var", "/var/cache", "/var/lib", "/var/lib/apt", "/var/lib/paddock", "/var/lib/paddock/cas",
		"/var/lib/dpkg!", "/.dockerenv!", "/home", "/work",
	)
	for _, tc := range []struct {
		name           string
		hidden, mounts []string
		want           string
	}{
		{
			name:   "defaults",
			hidden: []string{"/proc", "/tmp", "/run", "/home", "/var/lib/paddock", "/no/such/dir"},
			mounts: []string{"/proc", "/dev", "/tmp", "/work"},
			want: `file /.dockerenv
link /bin -> usr/bin
dir /dev
dir /etc
dir /proc
dir /tmp
dir /usr
dir /var
dir /var/cache
dir /var/lib
dir /var/lib/apt
file /var/lib/dpkg
dir /work
bind /.dockerenv
bind /etc
bind /usr
bind /var/cache
bind /var/lib/apt
bind /var/lib/dpkg`,
		},
		{
			name:   "input root below a host directory",
			hidden: []string{"/proc"},
			mounts: []string{"/proc", "/usr/src/work"},
			want: `file /.dockerenv
link /bin -> usr/bin
dir /etc
dir /home
dir /proc
dir /run
dir /tmp
dir /usr
dir /usr/bin
dir /usr/src
dir /usr/src/work
dir /var
dir /work
bind /.dockerenv
bind /etc
bind /home
bind /run
bind /tmp
bind /usr/bin
bind /var
bind /work`,
		},
		{
			name:   "input root below a missing directory",
			hidden: []string{"/proc", "/tmp", "/run", "/home", "/var", "/etc", "/usr", "/work"},
			mounts: []string{"/proc", "/b/f/w"},
			want: `file /.dockerenv
dir /b
dir /b/f
dir /b/f/w
link /bin -> usr/bin
dir /proc
bind /.dockerenv`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := planHostView(host, tc.hidden, tc.mounts)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(v); got != tc.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, tc.want)
			}
		})
	}

	// A mount point through a host symlink or file is refused: the sandbox
	// would see a different tree than the one asked for.
	for _, m := range []string{"/bin/work", "/etc/passwd/work"} {
		_, err := planHostView(host, nil, []string{m})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), m) {
			t.Errorf("mount point %s: %v, want INVALID_ARGUMENT naming it", m, err)
		}
	}
}

// TestHostViewCreate: the skeleton on disk has exactly the planned
// entries, with empty read-only files as bind targets.
func TestHostViewCreate(t *testing.T) {
	v := &hostView{Skeleton: []skeletonEntry{
		{Path: "/bin", Kind: kindSymlink, Target: "usr/bin"},
		{Path: "/etc", Kind: kindDir},
		{Path: "/marker", Kind: kindFile},
		{Path: "/var", Kind: kindDir},
		{Path: "/var/lib", Kind: kindDir},
	}}
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := v.create(dir); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin")); err != nil || target != "usr/bin" {
		t.Errorf("bin symlink: %q, %v", target, err)
	}
	st, err := os.Lstat(filepath.Join(dir, "marker"))
	if err != nil || !st.Mode().IsRegular() || st.Size() != 0 || st.Mode().Perm() != 0o444 {
		t.Errorf("bind target file: %v, %v", st, err)
	}
	if st, err := os.Lstat(filepath.Join(dir, "var/lib")); err != nil || !st.IsDir() {
		t.Errorf("var/lib: %v", err)
	}
	if err := v.create(dir); err == nil {
		t.Errorf("create over an existing directory succeeded")
	}
}

// TestSkeletonsAreBounded: past maxSkeletons distinct plans (one per
// InputRootAbsolutePath value a client makes up, or per state of the
// host's directories), the least recently used skeleton no sandbox uses is
// removed to make room: kept until a restart, one tenant's made-up paths
// took the whole bound, and every later plan, any tenant's, was refused.
// A skeleton in use is never removed; only when all are in use is a new
// plan refused, with RESOURCE_EXHAUSTED, and nothing made on disk.
func TestSkeletonsAreBounded(t *testing.T) {
	s := newSkeletons(t.TempDir())
	view := func(name string) *hostView {
		return &hostView{Skeleton: []skeletonEntry{{Path: "/" + name, Kind: kindDir}}}
	}
	inUse, doneInUse, err := acquireView(s, view("in-use"))
	if err != nil {
		t.Fatal(err)
	}
	var dones []func()
	for i := 1; i < maxSkeletons; i++ {
		_, done, err := acquireView(s, view(fmt.Sprint("made-up-", i)))
		if err != nil {
			t.Fatalf("plan %d: %v", i, err)
		}
		dones = append(dones, done)
	}
	if _, _, err := acquireView(s, view("fresh")); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a plan past the bound with every skeleton in use: %v, want RESOURCE_EXHAUSTED", err)
	}
	if ents, _ := os.ReadDir(s.dir); len(ents) != maxSkeletons {
		t.Errorf("%d skeleton directories, want %d: the refused plan made one", len(ents), maxSkeletons)
	}
	for _, done := range dones {
		done()
	}
	fresh, doneFresh, err := acquireView(s, view("fresh"))
	if err != nil {
		t.Fatalf("a plan past the bound once the others ended: %v", err)
	}
	defer doneFresh()
	if _, err := os.Stat(fresh); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(s.dir, view("made-up-1").key())); !os.IsNotExist(err) {
		t.Errorf("the least recently used skeleton is still there: %v", err)
	}
	if _, err := os.Stat(inUse); err != nil || len(s.byKey) != maxSkeletons {
		t.Errorf("the skeleton in use: %v; %d kept, want %d", err, len(s.byKey), maxSkeletons)
	}
	doneInUse()
	if again, done, err := acquireView(s, view("made-up-1")); err != nil || again != filepath.Join(s.dir, view("made-up-1").key()) {
		t.Errorf("an evicted plan again: %q, %v", again, err)
	} else {
		done()
	}
}

// TestHostViewOfALargeDirectoryIsRefused: an input root path below a
// host directory of more than maxViewEntries entries is INVALID_ARGUMENT
// naming InputRootAbsolutePath, not a skeleton of an inode and a bind per
// entry (18,000 for /usr/share/man/man1: the sandbox failed with EMFILE,
// and ten such values filled the runner's filesystem's inodes).
func TestHostViewOfALargeDirectoryIsRefused(t *testing.T) {
	host := newFakeHost("/usr", "/usr/share", "/usr/share/man")
	for i := range maxViewEntries + 1 {
		host.add(fmt.Sprintf("/usr/share/man/p%05d!", i))
	}
	_, err := planHostView(host, nil, []string{"/usr/share/man/zz"})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "InputRootAbsolutePath") {
		t.Fatalf("a view below %d entries: %v, want INVALID_ARGUMENT naming InputRootAbsolutePath", maxViewEntries+1, err)
	}
	if _, err := planHostView(host, nil, []string{"/usr/zz"}); err != nil {
		t.Fatalf("a view beside the large directory: %v", err)
	}
}

// TestSkeletonEntriesAreBounded: the skeletons' entries together are
// bounded (maxSkeletonEntries), as their number is: a plan past it evicts
// skeletons not in use, and is refused, making nothing, while they all
// are.
func TestSkeletonEntriesAreBounded(t *testing.T) {
	s := newSkeletons(t.TempDir())
	// A skeleton of all but one of the entries, in use (made by hand:
	// making 99,999 directories takes a minute).
	large := &skeleton{path: filepath.Join(s.dir, "large"), entries: maxSkeletonEntries - 1, users: 1, used: 1}
	if err := os.Mkdir(large.path, 0o755); err != nil {
		t.Fatal(err)
	}
	s.byKey["large"], s.entries, s.clock = large, large.entries, 1
	big := &hostView{Skeleton: []skeletonEntry{{Path: "/a", Kind: kindDir}, {Path: "/b", Kind: kindDir}}}
	if _, _, err := acquireView(s, big); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a plan past the entries' bound: %v, want RESOURCE_EXHAUSTED", err)
	}
	if ents, _ := os.ReadDir(s.dir); len(ents) != 1 {
		t.Errorf("skeleton directories %v made past the bound", ents)
	}
	small := &hostView{Skeleton: []skeletonEntry{{Path: "/a", Kind: kindDir}}}
	if _, doneSmall, err := acquireView(s, small); err != nil || s.entries != maxSkeletonEntries {
		t.Fatalf("a plan within the bound: %v (entries %d)", err, s.entries)
	} else {
		doneSmall()
	}
	large.users = 0 // its sandbox ended
	if _, doneBig, err := acquireView(s, big); err != nil || s.entries != 3 {
		t.Fatalf("a plan past the bound once the large one ended: %v (entries %d, want 3: the large one evicted, the small one kept)", err, s.entries)
	} else {
		doneBig()
	}
	if _, err := os.Stat(large.path); !os.IsNotExist(err) {
		t.Errorf("the evicted skeleton's directory: %v", err)
	}
}

// acquireView acquires v's skeleton under its own key, as hostViews does.
func acquireView(s *skeletons, v *hostView) (string, func(), error) {
	return s.acquire(v.key(), v)
}
