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
// InputRootAbsolutePath value a client makes up), a new one is refused
// with RESOURCE_EXHAUSTED and nothing is made on disk; a known plan is
// still served.
func TestSkeletonsAreBounded(t *testing.T) {
	s := &skeletons{dir: t.TempDir(), paths: map[string]string{}}
	known := &hostView{Skeleton: []skeletonEntry{{Path: "/etc", Kind: kindDir}}}
	p, err := s.get(known)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(s.paths); i < maxSkeletons; i++ {
		s.paths[fmt.Sprint("made-up-", i)] = "elsewhere"
	}
	fresh := &hostView{Skeleton: []skeletonEntry{{Path: "/q1", Kind: kindDir}}}
	if _, err := s.get(fresh); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a plan past the bound: %v, want RESOURCE_EXHAUSTED", err)
	}
	if ents, _ := os.ReadDir(s.dir); len(ents) != 1 {
		t.Errorf("skeleton directories %v, want only the known plan's", ents)
	}
	if again, err := s.get(known); err != nil || again != p {
		t.Errorf("the known plan: %q, %v; want %q", again, err, p)
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
// bounded (maxSkeletonEntries), as their number is: a plan past it is
// RESOURCE_EXHAUSTED and makes nothing.
func TestSkeletonEntriesAreBounded(t *testing.T) {
	s := &skeletons{dir: t.TempDir(), paths: map[string]string{}}
	s.entries = maxSkeletonEntries - 1
	big := &hostView{Skeleton: []skeletonEntry{{Path: "/a", Kind: kindDir}, {Path: "/b", Kind: kindDir}}}
	if _, err := s.get(big); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a plan past the entries' bound: %v, want RESOURCE_EXHAUSTED", err)
	}
	if ents, _ := os.ReadDir(s.dir); len(ents) != 0 {
		t.Errorf("skeleton directories %v made past the bound", ents)
	}
	small := &hostView{Skeleton: []skeletonEntry{{Path: "/a", Kind: kindDir}}}
	if _, err := s.get(small); err != nil || s.entries != maxSkeletonEntries {
		t.Fatalf("a plan within the bound: %v (entries %d)", err, s.entries)
	}
}
