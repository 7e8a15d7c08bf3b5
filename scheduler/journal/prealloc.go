package journal

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Disk space is reserved ahead of the appends, so that a full file system
// does not fail the journal. The journal may share its file system with
// others (in `paddock up`, tenants' build directories): a write that needs
// a new block fails with ENOSPC while they have filled it, and a failed
// write stops the journal for good. A write into blocks fallocate(2)
// already reserved needs none.
//
// The reserve is made with FALLOC_FL_KEEP_SIZE: the blocks are the file's,
// but its size, which recovery reads as the end of the records, stays the
// bytes written, so recovery never sees the reserve.
const (
	// preallocChunk is what a reservation reserves past the bytes about to
	// be written. Segments do not rotate by size (only at snapshots, every
	// 256 MiB of records or more), so the reserve is a sliding window, not
	// a segment's whole size; the live segment holds at most this much
	// more than its records.
	preallocChunk = 16 << 20
	// preallocMargin: a write that would leave less than this reserved
	// past it reserves a new chunk first. It is what the journal can still
	// write on a full disk after a reservation failed: thousands of
	// records, or a minute of a busy scheduler. A batch larger than the
	// reserve (a record may be up to MaxRecord) is reserved before it is
	// written.
	preallocMargin = 8 << 20
)

// reserve makes sure that the next n bytes of the current segment, and
// preallocMargin after them, are reserved, reserving preallocChunk past
// them when they are not. A failure is not an error: the write may still
// succeed (the disk may not be full), and only the write's own error
// stops the journal. It is said once in the log, and tried again at the
// next write, until it succeeds: one cheap system call per batch while
// the disk is full. A file system without fallocate (EOPNOTSUPP) is said
// once and never tried again. Writer goroutine only (or Open, before it
// starts).
func (j *Journal) reserve(n int64) {
	if j.noReserve || j.size+n+preallocMargin <= j.reserved {
		return
	}
	end := j.size + n + preallocChunk
	err := unix.Fallocate(int(j.f.Fd()), unix.FALLOC_FL_KEEP_SIZE, j.size, end-j.size)
	switch {
	case err == nil:
		j.reserved = end
		if j.reserveFailed {
			j.reserveFailed = false
			j.log.Info("journal: disk space reserved ahead of the records again", "segment", j.f.Name(), "reserved_bytes", end-j.size)
		}
	case errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS):
		j.noReserve = true
		j.log.Warn("journal: the file system cannot reserve disk space ahead of the records (fallocate); if it fills up, the journal's next write fails and stops it",
			"segment", j.f.Name(), "error", err)
	default:
		if !j.reserveFailed {
			j.reserveFailed = true
			j.log.Warn("journal: cannot reserve disk space ahead of the records; appends go on into what is still reserved, and fail only if the disk is still full when that is used up (tried again at each write)",
				"segment", j.f.Name(), "reserved_ahead_bytes", max(j.reserved-j.size, 0), "error", err)
		}
	}
}

// release gives back the current segment's reserve past its end, so that
// segments no longer appended to (rotated out, or of a closed journal)
// keep only their records' blocks. ftruncate to the file's own size frees
// the blocks past it on ext4, xfs and tmpfs, and can never cut a record:
// the size is read from the file, not from what the journal counted.
// Failing to release only wastes space until the segment is removed, so
// it is logged, not returned.
func (j *Journal) release() {
	if j.reserved == 0 {
		return
	}
	j.reserved = 0
	var st unix.Stat_t
	err := unix.Fstat(int(j.f.Fd()), &st)
	if err == nil {
		err = unix.Ftruncate(int(j.f.Fd()), st.Size)
	}
	if err != nil {
		j.log.Warn("journal: cannot release the disk space reserved past a segment's records", "segment", j.f.Name(), "error", err)
	}
}
