package storage

import (
	"errors"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// The CAS's MaxBytes is a bound the operator chose, not what the disk
// holds: the disk may be smaller, or shared with the action cache, the
// scheduler's journal, the worker's input roots and the runner (all of
// `paddock up` keeps its data under one directory). A CAS that filled the
// disk refused every later upload, 86-byte ones included, since nothing
// made it evict; the scheduler's journal then failed, and on a disk out of
// inodes the farm could not even restart (the runner could not make its
// socket). So the store also keeps some of its filesystem free, blocks and
// inodes, evicting the least recently used blobs to do so: before each new
// blob is written, at start-up, and after a write that found the disk full.

// roomCheckInterval bounds how long the store trusts its estimate of the
// filesystem's free room before it asks the kernel again (others write to
// the disk too).
const roomCheckInterval = time.Second

// diskRoom is a filesystem's free and total room, from statfs.
type diskRoom struct {
	bytes, totalBytes uint64 // free to unprivileged users, and in all
	files, totalFiles uint64 // free inodes, and in all (0: not reported)
}

// statRoom reads the room of the filesystem holding dir.
func statRoom(dir string) (diskRoom, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return diskRoom{}, err
	}
	bs := uint64(st.Bsize)
	return diskRoom{bytes: st.Bavail * bs, totalBytes: st.Blocks * bs, files: st.Ffree, totalFiles: st.Files}, nil
}

// headroom is what the store leaves free on a filesystem of this size: a
// twentieth of it, at least 1 MiB and 64 inodes, at most 1 GiB and 65,536
// inodes. Enough for the journal, the action cache and an action's
// outputs to be written while the CAS is full; little enough not to waste
// a large disk.
func headroom(r diskRoom) (bytes, files uint64) {
	bytes = min(max(r.totalBytes/20, 1<<20), 1<<30)
	if r.totalFiles > 0 {
		files = min(max(r.totalFiles/20, 64), 1<<16)
	}
	return bytes, files
}

// shortfall is how many bytes and inodes must be freed so that a blob of
// need bytes can be written and times the headroom stays free. It is
// pure.
func shortfall(r diskRoom, need int64, times uint64) (bytes int64, files int) {
	hb, hf := headroom(r)
	want := times*hb + uint64(max(need, 0))
	if r.bytes < want {
		bytes = int64(want - r.bytes)
	}
	if r.totalFiles > 0 && r.files < times*hf+1 {
		files = int(times*hf + 1 - r.files)
	}
	return bytes, files
}

// diskFull reports ENOSPC and EDQUOT.
func diskFull(err error) bool {
	return errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT)
}

// makeRoom evicts least recently used blobs until the filesystem has room
// for a blob of need bytes beside its headroom (best effort: a blob the
// worker has hard-linked frees nothing until its links go). It asks the
// kernel at most every roomCheckInterval unless force, and otherwise
// counts down its last answer by what it lets through.
func (s *DiskBlobStore) makeRoom(need int64, force bool) {
	now := s.clock.Now()
	s.mu.Lock()
	if !force && !s.roomAt.IsZero() && now.Sub(s.roomAt) < roomCheckInterval && s.takeRoomLocked(need) {
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	r, err := statRoom(s.dir)
	if err != nil {
		s.log.Warn("read the CAS filesystem's free room", "error", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.room, s.roomAt = r, now
	if bytes, files := shortfall(r, need, 1); bytes == 0 && files == 0 {
		return
	}
	// Down to twice the headroom, so that the next blobs need neither
	// another eviction nor another statfs each.
	bytes, files := shortfall(r, need, 2)
	evicted := s.set.RemoveOldest(files)
	if bytes > 0 {
		evicted = append(evicted, s.set.EvictOver(s.set.Size()-bytes, nil)...)
	}
	var freed int64
	for _, e := range evicted {
		s.evicted++
		freed += e.Size
		if err := os.Remove(s.path(e.Value.d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("evict CAS blob", "digest", e.Value.d.String(), "error", err)
		}
	}
	s.roomAt = time.Time{} // ask again next time
	s.log.Warn("the CAS's filesystem is nearly full: evicted blobs to keep some of it free",
		"blobs", len(evicted), "bytes", freed, "free_bytes", r.bytes, "free_inodes", r.files)
}

// takeRoomLocked reports whether the last known room fits a blob of need
// bytes beside twice the headroom, and if so counts what the blob may
// take as used: its bytes and a directory block, its inode and one for
// the shard directory it may create. Twice: the estimate misses what
// others write; near the headroom every Put asks the kernel.
func (s *DiskBlobStore) takeRoomLocked(need int64) bool {
	const dirBlock, inodes = 4096, 2
	hb, hf := headroom(s.room)
	bytes := uint64(max(need, 0)) + dirBlock
	if s.room.bytes < 2*hb+bytes || (s.room.totalFiles > 0 && s.room.files < 2*hf+inodes) {
		return false
	}
	s.room.bytes -= bytes
	s.room.files -= min(s.room.files, inodes)
	return true
}
