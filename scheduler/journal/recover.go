package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// tailInfo is the last segment, to append to after recovery: its path and
// the size of its valid prefix. path is empty when a new segment is needed.
type tailInfo struct {
	path string
	size int64
}

// recoverDir reads a journal directory: the newest snapshot and the records
// after it. It removes leftovers (temporary snapshots, segments and
// snapshots older than the newest snapshot).
func recoverDir(dir string, log *slog.Logger) (*Recovered, tailInfo, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, tailInfo{}, fmt.Errorf("journal: %w", err)
	}
	var segs, snaps []uint64
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			os.Remove(filepath.Join(dir, e.Name()))
			continue
		}
		switch kind, n, ok := parseName(e.Name()); {
		case ok && kind == "log":
			segs = append(segs, n)
		case ok && kind == "snap":
			snaps = append(snaps, n)
		}
	}
	slices.Sort(segs)
	slices.Sort(snaps)
	rec := &Recovered{}
	if len(snaps) > 0 {
		rec.SnapshotSeq = snaps[len(snaps)-1]
		path := filepath.Join(dir, snapshotName(rec.SnapshotSeq))
		if rec.Snapshot, err = readSnapshot(path, rec.SnapshotSeq); err != nil {
			return nil, tailInfo{}, fmt.Errorf("journal: snapshot %s: %w; refusing to start from a wrong state (move the journal directory away to start empty)", filepath.Base(path), err)
		}
		for _, n := range snaps[:len(snaps)-1] {
			os.Remove(filepath.Join(dir, snapshotName(n)))
		}
	}
	// Segments whose records the snapshot covers entirely: the next
	// segment starts at or before the record after the snapshot.
	for len(segs) > 1 && segs[1] <= rec.SnapshotSeq+1 {
		os.Remove(filepath.Join(dir, segmentName(segs[0])))
		segs = segs[1:]
	}
	if len(snaps) > 0 && !slices.Contains(segs, rec.SnapshotSeq+1) {
		// Rotate makes the segment after a snapshot, and syncs the
		// directory, before the snapshot is written: without it, the
		// records after the snapshot are gone (deleted by hand, or by the
		// file system), and starting would silently forget them. An older
		// segment the snapshot covers, left by a crash between writing
		// the snapshot and removing it, does not stand in for it: with
		// one there, the scheduler started from the snapshot and forgot
		// every operation recorded after it.
		return nil, tailInfo{}, fmt.Errorf("journal: the records after snapshot %d are missing (no segment %s); refusing to start from a wrong state (move the journal directory away to start empty)",
			rec.SnapshotSeq, segmentName(rec.SnapshotSeq+1))
	}
	if len(segs) > 0 && segs[0] > rec.SnapshotSeq+1 {
		return nil, tailInfo{}, fmt.Errorf("journal: records %d to %d are missing (the snapshot covers up to %d, the first segment starts at %d); refusing to start from a wrong state",
			rec.SnapshotSeq+1, segs[0]-1, rec.SnapshotSeq, segs[0])
	}
	tail, err := readSegments(dir, segs, rec, log)
	return rec, tail, err
}

// readSegments appends the records after the snapshot to rec. A torn or
// corrupt tail of the last segment is dropped (and said so); damage in an
// earlier segment, damage in the last one with complete records after it,
// or a gap, is an error.
func readSegments(dir string, segs []uint64, rec *Recovered, log *slog.Logger) (tailInfo, error) {
	next := segs0(segs, rec.SnapshotSeq+1) // seq of the next record to read
	var tail tailInfo
	for i, first := range segs {
		last := i == len(segs)-1
		if first != next {
			return tailInfo{}, fmt.Errorf("journal: segment %s starts at record %d, expected %d; refusing to start from a wrong state", segmentName(first), first, next)
		}
		path := filepath.Join(dir, segmentName(first))
		b, err := os.ReadFile(path)
		if err != nil {
			return tailInfo{}, fmt.Errorf("journal: %w", err)
		}
		valid, n, bad := scanSegment(b, func(rec0 []byte, seq uint64) {
			if seq > rec.SnapshotSeq {
				rec.Records = append(rec.Records, rec0)
			}
		}, first)
		next = first + n
		if bad != nil {
			if !last {
				return tailInfo{}, fmt.Errorf("journal: segment %s is damaged at byte %d (%v) and later segments exist; refusing to start from a wrong state", segmentName(first), valid, bad)
			}
			if k := framesAfter(b, valid); k != 0 {
				return tailInfo{}, fmt.Errorf("journal: segment %s is damaged at byte %d, record %d (%v), and %s: not a torn write, and acknowledged operations would be lost; refusing to start from a wrong state (to drop record %d and everything after it, truncate -s %d %s; or move the journal directory away to start empty)",
					segmentName(first), valid, next, bad, followingFrames(k), next, valid, path)
			}
			if errors.Is(bad, errPastEnd) {
				// Nothing complete follows: the append was cut short.
				bad = errTorn
			}
			rec.Dropped = fmt.Sprintf("segment %s: dropped %d byte(s) from byte %d, after record %d: %v", segmentName(first), len(b)-valid, valid, next-1, bad)
			log.Warn("journal: torn or corrupt tail dropped; every complete record before it is kept",
				"segment", segmentName(first), "offset", valid, "dropped_bytes", len(b)-valid, "last_record", next-1, "reason", bad.Error())
		}
		if last {
			tail = tailInfo{path: path, size: int64(valid)}
			if valid < len(segmentMagic) {
				tail = tailInfo{} // not even a header: start the segment again
				os.Remove(path)
			}
		}
	}
	if next <= rec.SnapshotSeq {
		// Records the snapshot covers are all there is; new records go in
		// a new segment after the snapshot.
		tail = tailInfo{}
	}
	return tail, nil
}

// framesAfter counts the complete, checksummed frames that follow the
// damaged frame at off of segment b. A torn write leaves none: a crash
// keeps a prefix of the file's appends, so only the segment's last frame,
// or its last few, are cut short. Frames after it mean a record damaged in
// place, a bit flipped on disk say, with later records, whose operations
// clients may have been told of, intact: dropping them as a torn tail
// lost them.
//
// The damaged frame's length is not trusted to find the next frame: the
// checksum covers it, so a mismatch may be the length's own, and a length
// that runs past the end of the segment or above MaxRecord reads just like
// a torn tail. So the search tries every offset after the frame's header
// (the next frame cannot start sooner) until a frame reads whole, follows
// the frames from there, and after any further damage resumes one byte
// on. A false match needs a checksum to come out right by chance (one in
// 2^32 per offset); it would refuse a torn tail, never drop a record.
//
// The search checksums at most resyncBudget bytes, so that a long stretch of
// garbage (random lengths that fit the segment, each a checksum over up to
// MaxRecord bytes) cannot hold a start-up for hours; past that it returns
// -1, unknown, which the caller refuses like frames found.
func framesAfter(b []byte, off int) int {
	k, work := 0, 0
	for p := off + frameHeader; p+frameHeader <= len(b); {
		size := int(binary.LittleEndian.Uint32(b[p : p+4]))
		if size > MaxRecord || p+frameHeader+size > len(b) {
			p++ // not a frame that reads whole; no checksum needed
			continue
		}
		if work += size; work > resyncBudget {
			return -1
		}
		if _, n, err := readFrame(b[p:]); err == nil {
			k++
			p += n
		} else {
			p++
		}
	}
	return k
}

// resyncBudget bounds the bytes framesAfter checksums; a variable for
// tests.
var resyncBudget = 256 << 20

// followingFrames says what framesAfter found, k, in a message.
func followingFrames(k int) string {
	if k < 0 {
		return fmt.Sprintf("complete record(s) may follow it (the search for them stopped after checksumming %d MiB)", resyncBudget>>20)
	}
	return fmt.Sprintf("%d complete record(s) follow it", k)
}

func segs0(segs []uint64, def uint64) uint64 {
	if len(segs) == 0 {
		return def
	}
	return segs[0]
}

// scanSegment calls fn for each record of a segment whose first record is
// first. It returns the size of the valid prefix, the number of records in
// it, and what stopped it early (nil at a clean end).
func scanSegment(b []byte, fn func(rec []byte, seq uint64), first uint64) (valid int, n uint64, bad error) {
	if len(b) < len(segmentMagic) {
		return 0, 0, errTorn
	}
	if string(b[:len(segmentMagic)]) != segmentMagic {
		return 0, 0, errors.New("not a journal segment (bad header)")
	}
	off := len(segmentMagic)
	for off < len(b) {
		rec, size, err := readFrame(b[off:])
		if err != nil {
			return off, n, err
		}
		fn(rec, first+n)
		n++
		off += size
	}
	return off, n, nil
}

// readSnapshot reads and verifies a snapshot file that should cover seq.
func readSnapshot(path string, seq uint64) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < snapHeader || string(b[:len(snapMagic)]) != snapMagic {
		return nil, errors.New("bad header")
	}
	h := b[len(snapMagic):]
	gotSeq := binary.LittleEndian.Uint64(h[0:8])
	size := binary.LittleEndian.Uint64(h[8:16])
	want := binary.LittleEndian.Uint32(h[16:20])
	payload := b[snapHeader:]
	if gotSeq != seq || size != uint64(len(payload)) {
		return nil, fmt.Errorf("header says record %d and %d bytes, file name says %d and %d bytes follow", gotSeq, size, seq, len(payload))
	}
	if got := crc32.Update(crc32.Checksum(h[0:16], castagnoli), castagnoli, payload); got != want {
		return nil, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return payload, nil
}
