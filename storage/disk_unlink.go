package storage

import (
	"errors"
	"io/fs"
	"time"

	"github.com/paddock-build/paddock/internal/lru"
)

// How a DiskBlobStore removes the files of the blobs it evicts: outside
// its lock.
//
// An evicted blob leaves the index at once, under mu, and its file is
// removed after mu is released. Removing the files under mu froze every
// call of the store (FindMissing, reads, other uploads) for as long as an
// eviction took: one 60 MiB upload into a CAS of 200,000 tiny blobs held
// it for 1m42s (ext4 removes about 2,000 files a second), and a restart
// with a lower bound kept the port closed for 2m35s.
//
// Between the two steps the file is doomed: no index entry names it, so
// reads and FindMissing already answer NOT_FOUND, but it is still on disk
// under the blob's name. s.doomed records it, under mu: false while its
// removal is queued, true while a remover is removing it. Races with a
// Put of the same digest are settled under mu:
//   - a remover claims a file (false to true) under mu before it removes
//     it, and skips a key no longer in doomed;
//   - a Put, before it names its file (commitLocked, reclaimLocked),
//     cancels a queued removal (deletes the key: its rename replaces the
//     old file, and the remover, finding nothing to claim, leaves the new
//     one) and waits for one in progress (one unlink, on unlinkDone).
//
// So a pending removal never takes a newer file, and a blob is never
// indexed, and reported present, while a removal of its file is pending.
//
// Who removes: the call that evicted, before it goes on. A Put that
// needed room (grow, commit, makeRoom) waits for the removal of what it
// evicted for it, and only that: the CAS's files then hold no more than
// MaxBytes (the doomed files are gone before the Put writes into the room
// they leave), and the statfs that follows (makeRoom) sees the disk as it
// is. No other call waits for those removals. At start-up nothing has
// asked for the room, so the eviction to a lower bound is removed in the
// background instead (evictAtStart), and the disk may hold more than
// MaxBytes until it is done.

// doomLocked records evicted entries, just taken out of the index, as
// doomed files, and returns their keys, for unlink, and bytes.
func (s *DiskBlobStore) doomLocked(evicted []lru.Entry[blobKey, *diskEntry]) (keys []blobKey, bytes int64) {
	keys = make([]blobKey, 0, len(evicted))
	for _, e := range evicted {
		s.evicted++
		s.doomed[e.Key] = false
		keys = append(keys, e.Key)
		bytes += e.Size
	}
	return keys, bytes
}

// unlink removes the doomed files of keys, in order, holding mu only to
// claim each and to let it go. A key no longer doomed (stored again since)
// is skipped; one another remover is removing is waited for. It always
// finishes: a file left doomed would stay on disk, counted nowhere.
func (s *DiskBlobStore) unlink(keys []blobKey) {
	for _, k := range keys {
		s.mu.Lock()
		s.waitUnlinkLocked(k)
		_, doomed := s.doomed[k]
		if doomed {
			s.doomed[k] = true
		}
		s.mu.Unlock()
		if !doomed {
			continue
		}
		if err := s.remove(s.pathOf(k)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("evict CAS blob", "hash", k.hash, "error", err)
		}
		s.mu.Lock()
		delete(s.doomed, k)
		if s.unlinkWaits > 0 {
			s.unlinkDone.Broadcast()
		}
		s.mu.Unlock()
	}
}

// waitUnlinkLocked returns once no remover is removing k's file. It
// releases mu while it waits: callers check the index after it.
func (s *DiskBlobStore) waitUnlinkLocked(k blobKey) {
	for s.doomed[k] {
		s.unlinkWaits++
		s.unlinkDone.Wait()
		s.unlinkWaits--
	}
}

// reclaimLocked frees k's name for a new file: it waits for a removal of
// the old file in progress and cancels one not begun (the new file will
// replace the old by rename). It may release mu while it waits.
func (s *DiskBlobStore) reclaimLocked(k blobKey) {
	s.waitUnlinkLocked(k)
	delete(s.doomed, k)
}

// evictAtStart evicts down to MaxBytes once the index is rebuilt (the
// bound may have been lowered since the files were written), says so, and
// removes the files in the background: they may be hundreds of thousands,
// minutes of unlinks, and the store serves meanwhile (the evicted blobs
// are missing already). Then it compacts the shard directories the
// removals left large (disk_shard_dirs.go); done is closed after that.
func (s *DiskBlobStore) evictAtStart(done chan<- struct{}) {
	s.mu.Lock()
	keys, bytes := s.evictLocked()
	s.mu.Unlock()
	if len(keys) > 0 {
		s.log.Info("the CAS holds more than its bound: evicted its least recently used blobs, removing their files in the background",
			"blobs", len(keys), "bytes", bytes, "max_bytes", s.maxBytes)
	}
	go func() {
		defer close(done)
		if len(keys) > 0 {
			start := time.Now()
			s.unlink(keys)
			s.log.Info("removed the files of the blobs evicted at start-up", "blobs", len(keys), "took", time.Since(start).Round(time.Millisecond))
		}
		s.compactDirs()
	}()
}
