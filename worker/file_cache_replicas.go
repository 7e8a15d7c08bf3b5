package worker

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/fileid"
)

// Replicas of a cached file at the link limit.
//
// A filesystem bounds the hard links to one inode (ext4: 65,000), and an
// input root may name one blob more often than that: one Directory of 300
// names for a blob, referenced 250 times from the root, is 75,000 links from
// a few kilobytes of Directory blobs. When link(2) refuses (EMLINK), the
// cache marks that file full and writes a replica of it, generation 1, 2,
// ... of the same (digest, executable bit, partition): an entry of its own
// in the LRU set, counted against MaxBytes and evicted like any other, and
// linked from until it too is full. N links to one blob thus cost about
// N/65,000 files, all in the cache; an input root's files never become
// copies of its own, which nothing would count (the runner's disk quota
// counts only what the sandbox owns).
//
// A full replica takes links again once the input roots linking it are
// gone: before a new replica is written, the full ones whose link count
// has fallen to half of what it was when they filled are used again, so
// the number of replicas follows the links that exist, not those ever made.

// maxRefusals bounds how often one Link retries after EMLINK from a file
// that had no other link (markFull marks nothing then): a filesystem
// refusing even a first link ends in an error, not in a loop. Retries after
// a replica filled up are not bounded: each needs the link limit's worth
// of links made meanwhile.
const maxRefusals = 3

// pick returns the key of base's replica to link from: the first that is
// not full; else a full one that has since let go of half its links; else
// the first missing generation, with the path of a full replica to copy
// (or "" to fetch it).
func (c *FileCache) pick(base cacheKey) (cacheKey, string) {
	from := ""
	k := base
	for ; ; k.gen++ {
		ce, ok := c.set.Peek(k)
		if !ok {
			break
		}
		if ce.full.Load() == 0 {
			return k, ""
		}
		if from == "" {
			from = ce.path
		}
	}
	if r, ok := c.revive(base, k.gen); ok {
		return r, ""
	}
	return k, from
}

// revive looks for a full replica among base's generations below n whose
// link count has fallen to half of what it was when it filled, marks it as
// taking links again, and returns its key. It stats each full replica, and
// runs only when a replica would otherwise be written: once per half a
// link limit of links at most.
func (c *FileCache) revive(base cacheKey, n int) (cacheKey, bool) {
	for k := base; k.gen < n; k.gen++ {
		ce, ok := c.set.Peek(k)
		if !ok {
			continue
		}
		full := ce.full.Load()
		if full == 0 {
			return k, true // another call revived it meanwhile
		}
		var st unix.Stat_t
		if err := unix.Stat(ce.path, &st); err != nil {
			continue // evicted meanwhile
		}
		if uint64(st.Nlink) <= full/2 && ce.full.CompareAndSwap(full, 0) {
			return k, true
		}
	}
	return cacheKey{}, false
}

// markFull records that link(2) refused another link to k's file p, with
// the file's link count then, so that pick moves on to another replica, and
// reports whether the next pick differs. A count of 1 (p is linked from
// nowhere else: the filesystem refuses links for another reason, or every
// input root linking it has just gone) marks nothing.
func (c *FileCache) markFull(k cacheKey, p string) bool {
	ce, ok := c.set.Peek(k)
	if !ok || ce.path != p {
		return true // evicted meanwhile: the next pick writes it again
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return true // removed meanwhile: ensure writes it again
	}
	if st.Nlink <= 1 {
		return false
	}
	ce.full.CompareAndSwap(0, uint64(st.Nlink))
	return true
}

// copyReplica writes k's file p from from, another replica of the same
// bytes on this disk, checking them against k's digest like any fetch.
func (c *FileCache) copyReplica(k cacheKey, p, from string) (fileid.ID, error) {
	f, err := os.Open(from)
	if err != nil {
		return fileid.ID{}, fmt.Errorf("replicate input %s: %w", k.d, err)
	}
	defer f.Close()
	return c.write(k, p, f)
}
