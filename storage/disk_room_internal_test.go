package storage

import "testing"

// TestShortfall: what must be freed so that a blob fits beside the
// headroom (a twentieth of the filesystem, at least 1 MiB and 64 inodes,
// at most 1 GiB and 65,536 inodes).
func TestShortfall(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		name      string
		room      diskRoom
		need      int64
		bytes     int64
		files     int
		headBytes uint64
	}{
		{"plenty", diskRoom{bytes: 500 * mib, totalBytes: 1000 * mib, files: 5000, totalFiles: 10000}, 10 * mib, 0, 0, 50 * mib},
		{"blob past the headroom", diskRoom{bytes: 55 * mib, totalBytes: 1000 * mib, files: 5000, totalFiles: 10000}, 10 * mib, 5 * mib, 0, 50 * mib},
		{"full", diskRoom{bytes: 0, totalBytes: 1000 * mib, files: 0, totalFiles: 10000}, 0, 50 * mib, 501, 50 * mib},
		{"small disk: 1 MiB at least", diskRoom{bytes: mib / 2, totalBytes: 8 * mib, files: 100, totalFiles: 200}, 0, mib / 2, 0, mib},
		{"no inode count", diskRoom{bytes: 500 * mib, totalBytes: 1000 * mib}, 0, 0, 0, 50 * mib},
		{"huge disk: 1 GiB at most", diskRoom{bytes: 2 << 30, totalBytes: 1 << 40, files: 1 << 20, totalFiles: 1 << 30}, 0, 0, 0, 1 << 30},
	} {
		b, f := shortfall(c.room, c.need, 1)
		hb, _ := headroom(c.room)
		if b != c.bytes || f != c.files || hb != c.headBytes {
			t.Errorf("%s: shortfall %d bytes, %d files, headroom %d; want %d, %d, %d", c.name, b, f, hb, c.bytes, c.files, c.headBytes)
		}
		if b2, f2 := shortfall(c.room, c.need, 2); (c.bytes > 0 && b2 != c.bytes+int64(hb)) || b2 < b || f2 < f {
			t.Errorf("%s: twice the headroom wants %d bytes, %d files", c.name, b2, f2)
		}
	}
}

// TestEvictForRoomEvictsAllWhenTheyHoldLessThanWanted: when the blobs
// stored hold less than twice the headroom beside the blob, every one is
// evicted, which may still make room for the blob alone. Before, the
// target went negative and nothing was evicted: a small CAS on a full
// filesystem refused every upload while holding blobs it could drop.
func TestEvictForRoomEvictsAllWhenTheyHoldLessThanWanted(t *testing.T) {
	s := openGated(t, t.TempDir(), 0, newUnlinkGate(t))
	data, ds := fill(t, s, 5, 64<<10)
	var stored int64
	for _, b := range data {
		stored += s.cost(int64(len(b)))
	}
	full := diskRoom{bytes: 0, totalBytes: 64 << 20, files: 15000, totalFiles: 16000} // inodes to spare
	s.mu.Lock()
	doomed, freed := s.evictForRoomLocked(full, 1000)
	s.mu.Unlock()
	if len(doomed) != len(ds) || freed != stored {
		t.Fatalf("evicted %d blobs (%d bytes), want all %d", len(doomed), freed, len(ds))
	}
}
