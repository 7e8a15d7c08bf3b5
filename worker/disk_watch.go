package worker

import (
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// diskWatchInterval is how often the build directories' filesystem is
// looked at while actions run: a disk full for a shorter moment, between
// two looks, can still go unseen.
const diskWatchInterval = 50 * time.Millisecond

// diskWatch tells whether the build directories' disk was full at some
// moment while an action ran, not only when it ended: another action
// that filled the disk and was removed (or one that freed its own filler)
// left the disk with room at the end, and an output file cut short
// meanwhile was cached as the result (outside probe). It looks only while
// actions run, one look for all of them.
type diskWatch struct {
	full     func() bool // the disk has no room now
	interval time.Duration

	mu      sync.Mutex
	running int    // actions between begin and their end
	seen    uint64 // looks that found the disk full
	stop    chan struct{}
}

func newDiskWatch(dir string) *diskWatch {
	return &diskWatch{full: func() bool { return diskFull(dir) }, interval: diskWatchInterval}
}

// begin marks an action starting to run; the returned func, called once
// when it has ended, reports whether the disk was full as it began, at a
// look since, or is full now.
func (w *diskWatch) begin() (end func() (wasFull bool)) {
	fullFirst := w.full()
	w.mu.Lock()
	start := w.seen
	if w.running++; w.running == 1 {
		w.stop = make(chan struct{})
		go w.watch(w.stop)
	}
	w.mu.Unlock()
	return func() bool {
		fullNow := w.full()
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.running--; w.running == 0 {
			close(w.stop)
		}
		return fullFirst || fullNow || w.seen != start
	}
}

func (w *diskWatch) watch(stop <-chan struct{}) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if w.full() {
				w.mu.Lock()
				w.seen++
				w.mu.Unlock()
			}
		}
	}
}

// diskFull reports whether the filesystem holding dir has no space left for
// an unprivileged writer (under 64 KiB available).
func diskFull(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Bavail*uint64(st.Bsize) < 64<<10
}
