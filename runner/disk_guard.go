package runner

import (
	"context"
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// diskGuardInterval is how often a diskGuard checks the filesystem.
	diskGuardInterval = 100 * time.Millisecond
	// minWalkInterval and walkCostFactor pace the walks a diskGuard makes
	// whatever the filesystem says: at most one a second, and never more
	// than a twentieth of the time (5% of a core) on a large input root.
	minWalkInterval = time.Second
	walkCostFactor  = 20
)

// diskGuard enforces an action's disk quotas on its input root, the only
// place on disk a sandbox can write (/tmp and /dev/shm are tmpfs bounded
// by size and by the memory limit; stdout and stderr are capped by the
// launcher): the bytes its files take, and how many files, directories
// and links it has there. It does not rely on filesystem quotas, which the kernels
// and filesystems we run on often lack (project quotas need ext4's quota
// feature or XFS's prjquota): RLIMIT_FSIZE, set to the byte quota in the
// spec, stops any single file at the quota exactly, and the guard kills
// the sandbox once its files together take more. Without the count,
// millions of empty files or directories (no bytes counted) used up the
// filesystem's inodes, and with them the CAS's and every other action's
// room on the worker's disk.
//
// It walks the input root, counting the entries the sandbox owns (its
// slot's host ids; inputs are hard links owned by the worker and do not
// count; the input root's own directories belong to the sandbox and do,
// by number, and by bytes only past what they took when the sandbox
// started, while every directory the action makes counts in full: see
// givenDirs and treeCounter.count):
// at once when the whole filesystem has grown by a quota since the start
// (less what the guard has already attributed to others; one statfs per
// 100ms, so a fast fill is caught within about that), and otherwise every
// second or so, since space others free on the same filesystem meanwhile
// hides the sandbox's growth from statfs. The overshoot past a quota is
// what the action creates before the next walk.
//
// A walk goes by directory descriptor, never by path name, so that no
// depth of long names hides a subtree (walkTree), and adds the files the
// sandbox's processes deleted but still hold open or mapped, which no walk
// finds (heldUsage). A walk that cannot count everything (a tree deeper
// than maxWalkDepth, an error other than an entry vanishing) kills the
// sandbox as past the quota (uncountable): what the guard cannot see it
// cannot bound.
type diskGuard struct {
	root string
	// bytes and files are the quotas; 0 means none.
	bytes, files int64
	// owns reports whether a host uid is one of the sandbox's.
	owns func(uid uint32) bool
	// given is what the input root's directories took when the worker
	// handed it over (chownDirectories); nil: nothing is credited.
	given givenDirs
}

// quotaHit says which quota, if any, a sandbox went past.
type quotaHit int

const (
	quotaNone quotaHit = iota
	quotaBytes
	quotaFiles
	// quotaUncountable: the guard could not count the sandbox's entries
	// (a tree deeper than maxWalkDepth, a walk that failed), so no quota
	// could be enforced.
	quotaUncountable
	// quotaInFlight: the sandbox held descriptors in flight in UNIX
	// sockets, which the guard cannot count, while the filesystem grew
	// past a quota (overInFlight).
	quotaInFlight
)

// diskUse is what the sandbox's entries take, or the filesystem's in use.
type diskUse struct{ bytes, files int64 }

// over returns the quota u is past.
func (g diskGuard) over(u diskUse) quotaHit {
	switch {
	case g.bytes > 0 && u.bytes > g.bytes:
		return quotaBytes
	case g.files > 0 && u.files > g.files:
		return quotaFiles
	}
	return quotaNone
}

// grown reports whether the filesystem grew by a quota over base.
func (g diskGuard) grown(used, base diskUse) bool {
	return g.bytes > 0 && used.bytes-base.bytes >= g.bytes || g.files > 0 && used.files-base.files >= g.files
}

// watch checks until ctx is done, and calls kill (once) and returns the
// quota if the sandbox's entries go past one.
func (g diskGuard) watch(ctx context.Context, kill func()) quotaHit {
	base, err := fsUsed(g.root)
	if err != nil {
		return quotaNone
	}
	t := time.NewTicker(diskGuardInterval)
	defer t.Stop()
	nextWalk := time.Now().Add(minWalkInterval)
	for {
		select {
		case <-ctx.Done():
			return quotaNone
		case <-t.C:
		}
		used, err := fsUsed(g.root)
		if !(err == nil && g.grown(used, base)) && time.Now().Before(nextWalk) {
			continue
		}
		start := time.Now()
		mine, inFlight, walkErr := g.usage()
		nextWalk = time.Now().Add(max(minWalkInterval, walkCostFactor*time.Since(start)))
		hit := g.over(mine)
		if hit == quotaNone && inFlight > 0 && err == nil {
			hit = g.overInFlight(used, base)
		}
		if walkErr != nil {
			// What the guard cannot see it cannot bound: an error
			// that hid a subtree, or held files, would otherwise let
			// the sandbox grow without limit.
			hit = g.uncountable()
		}
		if hit != quotaNone {
			kill()
			return hit
		}
		if err == nil && inFlight == 0 {
			// Whatever else the filesystem grew by is someone else's:
			// walk again once it has grown by the rest of a quota.
			base = diskUse{bytes: used.bytes - mine.bytes, files: used.files - mine.files}
		}
	}
}

// usage returns what the sandbox's entries take: those of the input root
// (walkTree) and the files it deleted but still holds open or mapped
// (heldUsage), on the input root's filesystem; and how many descriptors
// its processes hold in flight in UNIX sockets, whose files it cannot
// count. An error means the guard could not count them all, and the
// caller must not trust u.
func (g diskGuard) usage() (u diskUse, inFlight int64, err error) {
	root, err := unix.Open(g.root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return diskUse{}, 0, fmt.Errorf("open input root %s: %w", g.root, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(root, &st); err != nil {
		unix.Close(root)
		return diskUse{}, 0, fmt.Errorf("stat input root %s: %w", g.root, err)
	}
	tree, err := walkTree(root, g.owns, g.given) // closes root
	if err != nil {
		return diskUse{}, 0, fmt.Errorf("walk input root %s: %w", g.root, err)
	}
	held, inFlight, err := heldUsage(st.Dev, g.owns)
	if err != nil {
		return diskUse{}, 0, fmt.Errorf("files held by the sandbox: %w", err)
	}
	return diskUse{bytes: tree.bytes + held.bytes, files: tree.files + held.files}, inFlight, nil
}

// overInFlight returns quotaInFlight if the filesystem has grown past a
// quota since base, what the guard last attributed to others, and
// quotaNone otherwise: the files behind descriptors in flight in the
// sandbox's UNIX sockets (sent with SCM_RIGHTS to a socket nobody reads,
// then closed and deleted) are in no process's table and under no name,
// so while the sandbox holds any, all the filesystem's growth may be its
// own. Before, an action held 1.9 GB so past a 256 MiB quota and exited 0,
// cached; 1,025 descriptors in flight for each of its 65,536 uids, each
// a file up to RLIMIT_FSIZE, could fill any disk. Others' writes
// meanwhile count against it too: a sandbox holding descriptors in
// flight through a walk while the worker stores a quota's worth is
// killed, which builds, passing descriptors to a process that receives
// them at once, do not do.
func (g diskGuard) overInFlight(used, base diskUse) quotaHit {
	if g.over(diskUse{bytes: used.bytes - base.bytes, files: used.files - base.files}) != quotaNone {
		return quotaInFlight
	}
	return quotaNone
}

// uncountable is the quota reported when the guard cannot count what the
// sandbox's entries take (a tree deeper than maxWalkDepth, or an error
// other than an entry vanishing).
func (g diskGuard) uncountable() quotaHit {
	return quotaUncountable
}

// fsUsed returns the bytes and inodes in use on the filesystem holding p.
func fsUsed(p string) (diskUse, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return diskUse{}, err
	}
	return diskUse{bytes: int64(st.Blocks-st.Bfree) * st.Bsize, files: int64(st.Files - st.Ffree)}, nil
}

// isFileSizeSignal reports whether sig is the one the kernel sends a
// process that grows a file past RLIMIT_FSIZE.
func isFileSizeSignal(sig syscall.Signal) bool { return sig == syscall.SIGXFSZ }
