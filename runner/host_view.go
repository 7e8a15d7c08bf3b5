package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A sandbox without an image sees the host's root, read-only, so that a
// host toolchain (/usr/bin/gcc) works as under Bazel's local sandbox. It
// must not see everything, though: not the worker's other input roots,
// not the CAS, not the runner's state. And the host root has no mount
// point for the input root (/work), and is read-only.
//
// So the rootfs is a skeleton directory:
// empty directories for the sandbox's own mount points (/proc, /dev, /tmp,
// the input root path) and for every directory on the way to a hidden
// path, and copies of the host's symlinks (bin -> usr/bin). The spec then
// bind-mounts every other host directory and file at those levels
// read-only onto the skeleton — bubblewrap's method. A hidden path is
// therefore not mounted at all (rather than covered by a mask the sandbox
// might remove); /var/lib/paddock hidden means /var and /var/lib are
// skeleton directories and each of their other entries a bind.
//
// A plan costs a few directory reads, and depends on the input root path
// and on the host's directories, which may change: hostViews keeps each
// plan for as long as the directories it read are unchanged (one stat each
// per action instead of reading them). The skeleton for a given plan is
// created once and shared by every sandbox using that plan (skeletons):
// creating and removing one per action costs milliseconds on a slow disk
// (BenchmarkHostView), while sharing is safe because sandboxes mount it
// read-only and it belongs to host root.

// entryKind is the type of a host directory entry.
type entryKind int

const (
	kindOther entryKind = iota // sockets, devices, fifos: never shown
	kindDir
	kindFile
	kindSymlink
)

// hostEntry is one entry of a host directory.
type hostEntry struct {
	Name   string
	Kind   entryKind
	Target string // symlinks only
}

// skeletonEntry is one thing to create in the skeleton, at Path (absolute
// inside the sandbox).
type skeletonEntry struct {
	Path   string
	Kind   entryKind // kindDir, kindFile (empty bind target) or kindSymlink
	Target string
}

// hostView is a planned host rootfs: the skeleton to create (parents
// before children) and the read-only binds of host paths onto it (source
// and destination are the same path).
type hostView struct {
	Skeleton []skeletonEntry
	Binds    []specs.Mount
}

// hostLister reads the host's directories without following symlinks.
// osLister is the real one; tests plan over fakes.
type hostLister interface {
	// list returns the entries of dir.
	list(dir string) ([]hostEntry, error)
	// kind returns the type of p (not following a final symlink), and
	// false if it does not exist.
	kind(p string) (entryKind, bool)
	// stamp identifies the current state of directory dir (following
	// symlinks); see hostViews.
	stamp(dir string) dirStamp
}

// hostBindOptions are the options of every host bind.
var hostBindOptions = []string{"rbind", "ro", "nosuid", "nodev"}

// planHostView plans the host rootfs that hides hidden (host paths; ones
// that do not exist are ignored) and has empty directories at mountPoints
// (sandbox paths). It reads the host only through l.
func planHostView(l hostLister, hidden, mountPoints []string) (*hostView, error) {
	vp := &viewPlanner{l: l, hidden: map[string]bool{}, mounts: map[string]bool{}}
	for _, h := range hidden {
		vp.hidden[h] = true
	}
	for _, m := range mountPoints {
		vp.mounts[m] = true
	}
	split, err := vp.splitDirs(hidden, mountPoints)
	if err != nil {
		return nil, err
	}
	shown, err := vp.shown(split)
	if err != nil {
		return nil, err
	}
	if len(shown) > maxViewEntries {
		return nil, status.Errorf(codes.InvalidArgument, "the host's root around this input root would bind %d host entries (those of the host directories above its mount points %s and the hidden paths), more than the %d a sandbox mounts: use an InputRootAbsolutePath below a smaller host directory", len(shown), strings.Join(mountPoints, ", "), maxViewEntries)
	}
	v := &hostView{}
	dirs := map[string]bool{}
	for d := range split {
		if d != "/" {
			dirs[d] = true
		}
	}
	for _, m := range mountPoints {
		dirs[m] = true
	}
	for d := range dirs {
		v.Skeleton = append(v.Skeleton, skeletonEntry{Path: d, Kind: kindDir})
	}
	for _, s := range shown {
		v.Skeleton = append(v.Skeleton, skeletonEntry{Path: s.p, Kind: s.e.Kind, Target: s.e.Target})
		if s.e.Kind != kindSymlink {
			v.Binds = append(v.Binds, specs.Mount{Destination: s.p, Type: "bind", Source: s.p, Options: hostBindOptions})
		}
	}
	sort.Slice(v.Skeleton, func(i, j int) bool { return v.Skeleton[i].Path < v.Skeleton[j].Path })
	sort.Slice(v.Binds, func(i, j int) bool { return v.Binds[i].Destination < v.Binds[j].Destination })
	return v, nil
}

// viewPlanner holds what planHostView works from: the host's listing, the
// hidden paths and the mount points.
type viewPlanner struct {
	l              hostLister
	hidden, mounts map[string]bool
}

// plannedEntry is a host entry the view shows.
type plannedEntry struct {
	p string
	e hostEntry
}

// covered reports whether p is hidden, or below a mount point or a hidden
// path.
func (vp *viewPlanner) covered(p string) bool {
	for a := p; ; a = path.Dir(a) {
		if vp.hidden[a] || (vp.mounts[a] && a != p) {
			return true
		}
		if a == "/" {
			return false
		}
	}
}

// splitDirs returns the directories the view rebuilds as a skeleton
// rather than binds whole: "/" and every ancestor of a hidden path or a
// mount point. A hidden path below another one (or below a mount point)
// splits nothing: the directories on its way would show the sandbox the
// names of what is hidden. A mount point below something that is not a
// directory on the host is refused.
func (vp *viewPlanner) splitDirs(hidden, mountPoints []string) (map[string]bool, error) {
	split := map[string]bool{"/": true}
	addAncestors := func(p string) {
		for a := path.Dir(p); a != "/"; a = path.Dir(a) {
			split[a] = true
		}
	}
	for _, h := range hidden {
		if h != "/" && vp.covered(path.Dir(h)) {
			// Below a hidden path or a mount point: the view shows
			// nothing there, so h changes nothing, and its parent is
			// not read (a busy directory holding `paddock up`'s data,
			// say, under /tmp, would make every action plan again).
			continue
		}
		if _, ok := vp.l.kind(h); ok {
			addAncestors(h)
		}
	}
	for _, m := range mountPoints {
		for a := path.Dir(m); a != "/"; a = path.Dir(a) {
			if k, ok := vp.l.kind(a); ok && k != kindDir && !vp.covered(a) {
				return nil, status.Errorf(codes.InvalidArgument, "mount point %s: %s is not a directory on the host root", m, a)
			}
		}
		addAncestors(m)
	}
	return split, nil
}

// shown lists the entries of the split directories that the view binds
// (or, for symlinks, recreates): everything not hidden, not split further
// and not a mount point.
func (vp *viewPlanner) shown(split map[string]bool) ([]plannedEntry, error) {
	var splitList []string
	for d := range split {
		splitList = append(splitList, d)
	}
	sort.Strings(splitList)
	var shown []plannedEntry
	for _, d := range splitList {
		if vp.covered(d) || vp.mounts[d] {
			continue
		}
		if k, ok := vp.l.kind(d); !ok || k != kindDir {
			continue // only a skeleton directory (e.g. /work's parents)
		}
		ents, err := vp.l.list(d)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "list host %s: %v", d, err)
		}
		for _, e := range ents {
			p := path.Join(d, e.Name)
			if split[p] || vp.mounts[p] || vp.hidden[p] || e.Kind == kindOther {
				continue
			}
			shown = append(shown, plannedEntry{p, e})
		}
	}
	return shown, nil
}

// key identifies the plan: equal keys, equal skeletons and binds.
func (v *hostView) key() string {
	h := sha256.New()
	for _, e := range v.Skeleton {
		fmt.Fprintf(h, "%d %q %q\n", e.Kind, e.Path, e.Target)
	}
	for _, b := range v.Binds {
		fmt.Fprintf(h, "bind %q\n", b.Destination)
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// maxSkeletons bounds the skeletons a runner keeps (skeletons): each
// takes an entry per entry of the host directories above its input root
// path (at most maxViewEntries), and maxSkeletonEntries bounds them all
// together.
// InputRootAbsolutePath below a large host directory (/usr/share/man/man1,
// 18,000 entries) made a skeleton of 18,000 inodes, and mounted one bind
// per entry (the sandbox failed with EMFILE): ten such values took a
// 200,000-inode filesystem to 95%.
const (
	maxSkeletons       = 1024
	maxViewEntries     = 4096
	maxSkeletonEntries = 100_000
)

// create makes the skeleton under dir, which must not exist. Nothing is
// followed: dir is the runner's own, fresh directory.
func (v *hostView) create(dir string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for _, e := range v.Skeleton {
		p := filepath.Join(dir, e.Path)
		var err error
		switch e.Kind {
		case kindDir:
			err = os.Mkdir(p, 0o755)
		case kindFile:
			var fd int
			fd, err = unix.Open(p, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o444)
			if err == nil {
				unix.Close(fd)
			}
		case kindSymlink:
			err = os.Symlink(e.Target, p)
		}
		if err != nil {
			return fmt.Errorf("skeleton %s: %w", e.Path, err)
		}
	}
	return nil
}

// osLister is the host's filesystem.
type osLister struct{}

func (osLister) list(dir string) ([]hostEntry, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := make([]hostEntry, 0, len(ents))
	for _, e := range ents {
		he := hostEntry{Name: e.Name(), Kind: kindOf(e.Type())}
		if he.Kind == kindSymlink {
			if he.Target, err = os.Readlink(filepath.Join(dir, e.Name())); err != nil {
				continue // gone meanwhile
			}
		}
		out = append(out, he)
	}
	return out, nil
}

func (osLister) kind(p string) (entryKind, bool) {
	st, err := os.Lstat(p)
	if err != nil {
		return kindOther, false
	}
	return kindOf(st.Mode().Type()), true
}

func (osLister) stamp(dir string) dirStamp {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return dirStamp{}
	}
	return dirStamp{
		Exists: true, Dev: st.Dev, Ino: st.Ino,
		Ctime: time.Unix(st.Ctim.Unix()), Mtime: time.Unix(st.Mtim.Unix()),
	}
}

func kindOf(t fs.FileMode) entryKind {
	switch {
	case t.IsDir():
		return kindDir
	case t.IsRegular():
		return kindFile
	case t&fs.ModeSymlink != 0:
		return kindSymlink
	}
	return kindOther
}

// resolvedHiddenPaths returns paths plus, for each that exists through a
// symlink somewhere, its real location, so that a hidden directory stays
// hidden under both names' planning.
func resolvedHiddenPaths(paths []string) []string {
	out := append([]string(nil), paths...)
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(p)
		if err == nil && real != p && path.IsAbs(real) && real != "/" {
			out = append(out, real)
		}
	}
	return out
}
