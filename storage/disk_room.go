package storage

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
// blob is written, at start-up, and after a write that found the disk full;
// and when others' files leave no room, it refuses new blobs rather than
// take the rest.

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
// for a blob of need bytes beside its headroom (a blob the worker has
// hard-linked frees nothing until its links go). It asks the kernel each
// time (one statfs): others write to the disk too, and an estimate kept
// for a second let a burst of uploads fill what they had just written.
// When evicting cannot make the room (other files fill the disk), it is
// RESOURCE_EXHAUSTED: the blob is not written, so the CAS does not take
// the last of the disk from the journal, the action cache and the actions
// (it wrote until ENOSPC). The evicted blobs' files are removed with mu
// released, before the second statfs, which must see them gone
// (disk_unlink.go).
func (s *DiskBlobStore) makeRoom(need int64) error {
	r, err := statRoom(s.dir)
	if err != nil {
		s.log.Warn("read the CAS filesystem's free room", "error", err)
		return nil
	}
	if bytes, files := shortfall(r, need, 1); bytes == 0 && files == 0 {
		return nil
	}
	s.mu.Lock()
	doomed, freed := s.evictForRoomLocked(r, need)
	s.mu.Unlock()
	if len(doomed) > 0 {
		s.unlink(doomed)
		s.roomEvicted(len(doomed), freed, r)
		if r, err = statRoom(s.dir); err != nil {
			return nil
		}
	}
	if bytes, files := shortfall(r, need, 1); bytes > 0 || files > 0 {
		return s.refuseFull(r)
	}
	return nil
}

// roomEvicted logs makeRoom's evictions at most once a minute, with what
// was evicted since the last line: with max_bytes above the disk (which
// is allowed), every upload evicts, and each wrote a line (220 in 38 s).
func (s *DiskBlobStore) roomEvicted(blobs int, bytes int64, r diskRoom) {
	now := s.clock.Now()
	s.mu.Lock()
	s.roomLog.blobs += blobs
	s.roomLog.bytes += bytes
	say := now.Sub(s.roomLog.at) >= time.Minute
	total := s.roomLog
	if say {
		s.roomLog = roomLog{at: now}
	}
	s.mu.Unlock()
	if say {
		s.log.Warn("the CAS's filesystem is nearly full: evicted blobs to keep some of it free (said at most once a minute)",
			"blobs", total.blobs, "bytes", total.bytes, "free_bytes", r.bytes, "free_inodes", r.files)
	}
}

// roomLog is what makeRoom evicted since it last said so.
type roomLog struct {
	at    time.Time
	blobs int
	bytes int64
}

// refuseFull is makeRoom's refusal when others' files leave no room, said
// in the log at most once a minute.
func (s *DiskBlobStore) refuseFull(r diskRoom) error {
	hb, hf := headroom(r)
	now := s.clock.Now()
	s.mu.Lock()
	say := now.Sub(s.fullLogged) >= time.Minute
	if say {
		s.fullLogged = now
	}
	s.mu.Unlock()
	if say {
		s.log.Warn("the CAS's filesystem is full of other files: refusing uploads until there is room",
			"free_bytes", r.bytes, "free_inodes", r.files, "kept_free_bytes", hb, "kept_free_inodes", hf)
	}
	return status.Errorf(codes.ResourceExhausted, "the CAS's disk is full: %d bytes and %d inodes are free, and %d bytes and %d inodes are kept free for the rest of the farm", r.bytes, r.files, hb, hf)
}

// evictForRoomLocked takes the least recently used blobs out of the index
// to bring the room of r up to twice the headroom beside need, so that
// the next blobs do not need another eviction each, and returns their
// keys, whose files the caller removes once mu is released, and bytes.
func (s *DiskBlobStore) evictForRoomLocked(r diskRoom, need int64) (doomed []blobKey, freed int64) {
	bytes, files := shortfall(r, need, 2)
	evicted := s.set.RemoveOldest(files)
	if bytes > 0 {
		// All of them when they hold less than is wanted: what they free
		// may still be enough for need alone (makeRoom checks).
		evicted = append(evicted, s.set.EvictOver(max(s.set.Size()-bytes, 0), nil)...)
	}
	return s.doomLocked(evicted)
}

// MakeRoom evicts least recently used blobs until the filesystem has need
// bytes free beside the store's headroom, or as near as evicting gets:
// for the worker of `paddock up`, whose actions share the disk, when an
// action found it full. The store keeps only its headroom free for
// others, and nothing else made it evict: an action that needed more
// scratch room than that failed on every retry while the disk held
// nothing but cached blobs (outside probe). RESOURCE_EXHAUSTED if the
// room cannot be made.
func (s *DiskBlobStore) MakeRoom(_ context.Context, need int64) error { return s.makeRoom(need) }
