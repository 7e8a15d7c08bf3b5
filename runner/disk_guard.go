package runner

import (
	"context"
	"io/fs"
	"path/filepath"
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

// diskGuard enforces an action's disk quota on its input root, the only
// place on disk a sandbox can write (/tmp and /dev/shm are tmpfs bounded
// by size and by the memory limit; stdout and stderr are capped by the
// launcher). It does not rely on filesystem quotas, which the kernels and
// filesystems we run on often lack (project quotas need ext4's quota
// feature or XFS's prjquota): RLIMIT_FSIZE, set to the quota in the spec,
// stops any single file at the quota exactly, and the guard kills the
// sandbox once the files it created together take more.
//
// It walks the input root, counting the blocks of the files the sandbox
// owns (its slot's host ids; inputs are hard links owned by the worker and
// do not count): at once when the whole filesystem has grown by the quota
// since the start (less what the guard has already attributed to others;
// one statfs per 100ms, so a fast fill is caught within about that), and
// otherwise every second or so, since space others free on the same
// filesystem meanwhile hides the sandbox's growth from statfs. The
// overshoot past the quota is what the action writes before the next walk.
type diskGuard struct {
	root  string
	quota int64
	// owns reports whether a host uid is one of the sandbox's.
	owns func(uid uint32) bool
}

// watch checks until ctx is done, and calls over (once) and returns true
// if the sandbox's files take more than the quota.
func (g diskGuard) watch(ctx context.Context, over func()) bool {
	base, err := fsUsedBytes(g.root)
	if err != nil {
		return false
	}
	t := time.NewTicker(diskGuardInterval)
	defer t.Stop()
	nextWalk := time.Now().Add(minWalkInterval)
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		used, err := fsUsedBytes(g.root)
		grown := err == nil && used-base >= g.quota
		if !grown && time.Now().Before(nextWalk) {
			continue
		}
		start := time.Now()
		mine := g.usage()
		nextWalk = time.Now().Add(max(minWalkInterval, walkCostFactor*time.Since(start)))
		if mine > g.quota {
			over()
			return true
		}
		if err == nil {
			// Whatever else the filesystem grew by is someone else's:
			// walk again once it has grown by the rest of the quota.
			base = used - mine
		}
	}
}

// usage returns the bytes of disk taken by the files (not directories) in
// the input root that the sandbox owns, counting a file with several links
// once. Entries that vanish meanwhile are skipped.
func (g diskGuard) usage() int64 {
	var total int64
	seen := map[uint64]bool{} // inodes with more than one link
	_ = filepath.WalkDir(g.root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // gone, or unreadable: skip it
		}
		if d.IsDir() {
			// Not counted: the input root's own directories belong to
			// the sandbox too (so that it can create its outputs).
			return nil
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || !g.owns(st.Uid) {
			return nil
		}
		if st.Nlink > 1 {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		total += st.Blocks * 512
		return nil
	})
	return total
}

// fsUsedBytes returns the bytes in use on the filesystem holding p.
func fsUsedBytes(p string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize, nil
}

// isFileSizeSignal reports whether sig is the one the kernel sends a
// process that grows a file past RLIMIT_FSIZE.
func isFileSizeSignal(sig syscall.Signal) bool { return sig == syscall.SIGXFSZ }
