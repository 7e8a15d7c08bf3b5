package runner

import (
	"path"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/clock"
)

// hostViews keeps the host-view plans made so far, by input root path
// (the only input of a plan that varies per action: the hidden paths are
// the Service's, fixed), with the skeleton directory made for each.
//
// Planning reads the host: the directories it lists, and the existence
// and type of the hidden paths and of the input root path's ancestors. A
// plan is reused for as long as none of the host directories it depends
// on has changed, checked on every reuse with one stat per directory:
//
//   - each directory it listed;
//   - for each path whose existence or type it checked, its parent
//     directory, through which alone that path can appear, vanish or be
//     replaced (a missing parent must appear first, which changes its
//     stamp too).
//
// A name added, removed or renamed in a directory changes that
// directory's ctime and mtime, and another directory (or a symlink to
// another one) at the same path has another inode, so comparing
// dirStamps finds every change the plan could depend on. One exception:
// two changes within one tick of the filesystem's clock leave the same
// timestamps, so a plan that read a directory which had changed less than
// racyWindow before is not kept (the next action plans again), as git
// does for its index.
//
// Safe for concurrent use: entries are immutable once stored, and no
// lock is held while the host is read.
type hostViews struct {
	lister      hostLister
	hidden      []string
	roots       *skeletons
	clock       clock.Clock
	mountPoints func(irp string) []string

	mu      sync.Mutex
	entries map[string]*hostViewEntry // by input root path
}

// newHostViews returns an empty cache planning over l, with fixedMounts
// (defaultMountPoints) as the sandbox's own mount points besides the
// input root's.
func newHostViews(l hostLister, hidden []string, roots *skeletons, fixedMounts []string) *hostViews {
	return &hostViews{
		lister: l, hidden: hidden, roots: roots, clock: clock.Real{},
		mountPoints: func(irp string) []string { return append(slices.Clip(fixedMounts), irp) },
		entries:     map[string]*hostViewEntry{},
	}
}

// hostViewEntry is one plan and what it was made from.
type hostViewEntry struct {
	view *hostView
	key  string              // view.key()
	deps map[string]dirStamp // host directory -> its state when planned
}

// dirStamp is what identifies one state of a directory (its path
// resolved, following symlinks). The zero value is a path that does not
// exist or is not a directory.
type dirStamp struct {
	Exists       bool
	Dev, Ino     uint64
	Ctime, Mtime time.Time // zero for fakes
}

// changed returns the later of the stamp's two times.
func (d dirStamp) changed() time.Time {
	if d.Mtime.After(d.Ctime) {
		return d.Mtime
	}
	return d.Ctime
}

const (
	// racyWindow: a directory that changed less than this before it was
	// read may change again with the same timestamps (see hostViews).
	racyWindow = 2 * time.Second
	// maxHostViews bounds the cache: InputRootAbsolutePath is the
	// client's choice. Past it, the cache starts over.
	maxHostViews = 64
)

// get returns the plan for an input root at irp (a sandbox path) and its
// skeleton directory, planning it unless a valid one is cached, and the
// function that ends the caller's use of the skeleton.
func (c *hostViews) get(irp string) (*hostView, string, func(), error) {
	c.mu.Lock()
	e := c.entries[irp]
	c.mu.Unlock()
	if e == nil || !c.unchanged(e) {
		rec := &recordingLister{hostLister: c.lister, deps: map[string]dirStamp{}}
		view, err := planHostView(rec, c.hidden, c.mountPoints(irp))
		if err != nil {
			return nil, "", nil, err
		}
		e = &hostViewEntry{view: view, key: view.key(), deps: rec.deps}
		c.keep(irp, e)
	}
	rootfs, release, err := c.roots.acquire(e.key, e.view)
	if isDiskFull(err) {
		return nil, "", nil, diskFull("setting up the sandbox's host view", err)
	}
	if status.Code(err) == codes.ResourceExhausted {
		return nil, "", nil, err
	}
	if err != nil {
		return nil, "", nil, status.Errorf(codes.Internal, "host rootfs: %v", err)
	}
	return e.view, rootfs, release, nil
}

// keep caches e for irp, unless a directory it read had changed too
// recently to rely on its timestamps.
func (c *hostViews) keep(irp string, e *hostViewEntry) {
	settled := c.clock.Now().Add(-racyWindow)
	for _, st := range e.deps {
		if st.changed().After(settled) {
			return // too fresh to rely on: not kept
		}
	}
	c.mu.Lock()
	if len(c.entries) >= maxHostViews {
		clear(c.entries)
	}
	c.entries[irp] = e
	c.mu.Unlock()
}

// unchanged reports whether every directory e depends on is as it was.
func (c *hostViews) unchanged(e *hostViewEntry) bool {
	for dir, was := range e.deps {
		if c.lister.stamp(dir) != was {
			return false
		}
	}
	return true
}

// forget drops every cached plan (a bind source vanished between a plan's
// check and the sandbox's mount).
func (c *hostViews) forget() {
	c.mu.Lock()
	clear(c.entries)
	c.mu.Unlock()
}

// recordingLister is a hostLister that notes, with its stamp, each host
// directory whose change could change what the planner read.
type recordingLister struct {
	hostLister
	deps map[string]dirStamp
}

func (r *recordingLister) note(dir string) dirStamp {
	st, ok := r.deps[dir]
	if !ok {
		st = r.stamp(dir)
		r.deps[dir] = st
	}
	return st
}

// list notes dir itself; it is stamped before it is read, so a change
// during the read shows as a fresh ctime (not kept) or a different stamp.
func (r *recordingLister) list(dir string) ([]hostEntry, error) {
	r.note(dir)
	return r.hostLister.list(dir)
}

// kind notes p's parent directory: p can appear, vanish or change type
// only by a change of that directory's entries, or by another directory
// taking its path; a missing parent has to appear first.
func (r *recordingLister) kind(p string) (entryKind, bool) {
	r.note(path.Dir(p))
	return r.hostLister.kind(p)
}
