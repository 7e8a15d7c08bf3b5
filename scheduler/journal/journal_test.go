package journal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/paddock-build/paddock/internal/testlog"
)

func open(t *testing.T, dir string, logs *testlog.Buffer) (*Journal, *Recovered) {
	t.Helper()
	if logs == nil {
		logs = &testlog.Buffer{}
	}
	j, rec, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return j, rec
}

func record(i int) []byte {
	return []byte(fmt.Sprintf("record %d %s", i, strings.Repeat("x", i%37)))
}

// write appends n records starting at from, waits until they are durable
// and closes the journal.
func write(t *testing.T, dir string, from, n int) {
	t.Helper()
	j, _ := open(t, dir, nil)
	var last uint64
	for i := from; i < from+n; i++ {
		last = j.Append(record(i))
	}
	if err := j.WaitDurable(last); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
}

// closeJournal closes j at the end of a test (deferred), failing the test
// if Close reports an error.
func closeJournal(t *testing.T, j *Journal) {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Errorf("close journal: %v", err)
	}
}

func checkRecords(t *testing.T, rec *Recovered, from, n int) {
	t.Helper()
	if len(rec.Records) != n {
		t.Fatalf("recovered %d records, want %d", len(rec.Records), n)
	}
	for i, r := range rec.Records {
		if want := record(from + i); !bytes.Equal(r, want) {
			t.Fatalf("record %d = %q, want %q", i, r, want)
		}
	}
}

func TestAppendAndRecoverAcrossReopens(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, 0, 100)
	write(t, dir, 100, 50)
	j, rec := open(t, dir, nil)
	defer closeJournal(t, j)
	checkRecords(t, rec, 0, 150)
	if rec.Dropped != "" || rec.Snapshot != nil {
		t.Fatalf("dropped %q, snapshot %q; want neither", rec.Dropped, rec.Snapshot)
	}
	if got := j.Append([]byte("next")); got != 151 {
		t.Fatalf("next seq %d, want 151", got)
	}
}

// Concurrent appenders share fsyncs: the writer takes everything buffered
// at once, so there are far fewer commits than records.
func TestGroupCommit(t *testing.T) {
	dir := t.TempDir()
	var commits, last uint64
	var mu sync.Mutex
	j, _, err := Open(Options{Dir: dir, OnDurable: func(seq uint64, err error) {
		mu.Lock()
		commits++
		last = seq
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				if err := j.WaitDurable(j.Append(record(i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if last != 3200 || commits >= 3200 {
		t.Fatalf("%d commits for 3200 records (last durable %d): want group commits", commits, last)
	}
	t.Logf("%d commits for 3200 records", commits)
}

// recordEnds returns the offsets where each record of a clean segment
// ends.
func recordEnds(t *testing.T, path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ends []int
	valid, _, bad := scanSegment(b, func([]byte, uint64) {}, 1)
	if bad != nil || valid != len(b) {
		t.Fatalf("segment not clean before the test damages it: %v", bad)
	}
	off := len(segmentMagic)
	for off < len(b) {
		_, n, _ := readFrame(b[off:])
		off += n
		ends = append(ends, off)
	}
	return ends
}

// completeBefore is how many records end at or before byte off.
func completeBefore(ends []int, off int) int {
	n := 0
	for _, e := range ends {
		if e <= off {
			n++
		}
	}
	return n
}

// damageRounds runs damage 20 times, each on a fresh journal of 40
// records in one segment (at path, its records ending at ends), with a
// random source seeded with seed and this process's id.
func damageRounds(t *testing.T, seed uint64, damage func(rng *rand.Rand, dir, path string, ends []int)) {
	rng := rand.New(rand.NewPCG(seed, uint64(os.Getpid())))
	for round := 0; round < 20; round++ {
		dir := t.TempDir()
		write(t, dir, 0, 40)
		path := filepath.Join(dir, segmentName(1))
		damage(rng, dir, path, recordEnds(t, path))
	}
}

func TestTornTailIsDroppedAndSaid(t *testing.T) {
	damageRounds(t, 1, func(rng *rand.Rand, dir, path string, ends []int) {
		cut := len(segmentMagic) + rng.IntN(ends[len(ends)-1]-len(segmentMagic))
		if err := os.Truncate(path, int64(cut)); err != nil {
			t.Fatal(err)
		}
		logs := &testlog.Buffer{}
		j, rec := open(t, dir, logs)
		keep := completeBefore(ends, cut)
		checkRecords(t, rec, 0, keep)
		boundary := len(segmentMagic)
		if keep > 0 {
			boundary = ends[keep-1]
		}
		torn := cut != boundary
		if torn && (!strings.Contains(logs.String(), "torn or corrupt tail dropped") || rec.Dropped == "") {
			t.Fatalf("cut at %d: nothing said about the dropped bytes; log %q", cut, logs.String())
		}
		// Appending continues after the last complete record.
		seq := j.Append([]byte("after"))
		if err := j.WaitDurable(seq); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		j, rec = open(t, dir, nil)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if len(rec.Records) != keep+1 || string(rec.Records[keep]) != "after" || rec.Dropped != "" {
			t.Fatalf("cut at %d: after appending, recovered %d records (dropped %q), want %d then \"after\"", cut, len(rec.Records), rec.Dropped, keep)
		}
	})
}

// TestFlippedBitIsDetected: a bit flipped in the last record drops it as
// a torn tail would, every record before it kept. One flipped in an
// earlier record, with intact records after it, cannot be a torn write
// (a crash keeps a prefix of the appends): the journal refuses to open,
// naming the segment, the offset and the command that drops the rest,
// and leaves the file as it is; dropping it as a tail silently lost every
// later, acknowledged operation. That holds for a flip in a record's
// length too, though it loses the framing: recovery finds the records
// after it without trusting the length.
func TestFlippedBitIsDetected(t *testing.T) {
	damageRounds(t, 2, func(rng *rand.Rand, dir, path string, ends []int) {
		b, _ := os.ReadFile(path)
		pos := len(segmentMagic) + rng.IntN(len(b)-len(segmentMagic))
		b[pos] ^= 1 << rng.IntN(8)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		damaged := completeBefore(ends, pos) // the damaged record's index
		start := len(segmentMagic)
		if damaged > 0 {
			start = ends[damaged-1]
		}
		logs := &testlog.Buffer{}
		j, rec, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		if err != nil {
			if damaged == len(ends)-1 {
				t.Fatalf("bit flipped at %d in the last record: %v, want it dropped as a tail", pos, err)
			}
			if !strings.Contains(err.Error(), "not a torn write") || !strings.Contains(err.Error(), fmt.Sprintf("truncate -s %d %s", start, path)) {
				t.Fatalf("bit flipped at %d: %v, want a refusal naming the offset %d and the truncate", pos, err, start)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
				t.Fatalf("bit flipped at %d: the refused segment was changed", pos)
			}
			return
		}
		if err := j.Close(); err != nil {
			t.Errorf("close journal: %v", err)
		}
		if damaged < len(ends)-1 {
			t.Fatalf("bit flipped at %d in record %d of %d: opened, dropping %q; want a refusal", pos, damaged+1, len(ends), rec.Dropped)
		}
		checkRecords(t, rec, 0, damaged)
		if !strings.Contains(logs.String(), "torn or corrupt tail dropped") || !strings.Contains(rec.Dropped, fmt.Sprintf("after record %d", damaged)) {
			t.Fatalf("bit flipped at %d: dropped %q, log %q", pos, rec.Dropped, logs.String())
		}
	})
}

// TestCorruptLengthBeforeCompleteRecordsRefusesToStart: a length damaged
// in the middle of the last segment so that it runs past its end, or
// above MaxRecord, reads like a torn tail; but complete records follow
// it, which a crash cannot leave (it keeps a prefix of the appends).
// Dropping it as a tail silently lost them all: the journal refuses to
// open, as for a checksum mismatch, and leaves the segment as it is.
func TestCorruptLengthBeforeCompleteRecordsRefusesToStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte, start int) // the length field at b[start:]
		reason string
	}{
		// The tester's repro: 0xff over a length byte.
		{"byte overwritten", func(b []byte, start int) { b[start+1] = 0xff }, "length runs past the end of the segment"},
		{"just past the end", func(b []byte, start int) {
			binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-frameHeader+1))
		}, "length runs past the end of the segment"},
		{"above the maximum", func(b []byte, start int) {
			binary.LittleEndian.PutUint32(b[start:], MaxRecord+1)
		}, fmt.Sprintf("record length %d is above the maximum", MaxRecord+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, 0, 200)
			path := filepath.Join(dir, segmentName(1))
			ends := recordEnds(t, path)
			start := ends[49] // record 51 starts where record 50 ends
			b, _ := os.ReadFile(path)
			tc.damage(b, start)
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &testlog.Buffer{}
			j, rec, err := Open(Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
			if err == nil {
				_ = j.Close() // the test fails below anyway
				t.Fatalf("opened, dropping %q; want a refusal", rec.Dropped)
			}
			for _, want := range []string{
				fmt.Sprintf("damaged at byte %d, record 51 (", start),
				tc.reason,
				"and 149 complete record(s) follow it: not a torn write",
				"refusing to start",
				fmt.Sprintf("truncate -s %d %s", start, path),
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, b) {
				t.Errorf("the refused segment was changed (%d bytes, was %d)", len(after), len(b))
			}
			if logs.String() != "" {
				t.Errorf("logged %q; want nothing dropped", logs.String())
			}
		})
	}
}

// TestTornLastRecordIsDropped: a segment that ends inside its last frame,
// its header or its payload, with nothing after it, is what a crash in
// the middle of an append leaves; the frame is dropped as a torn tail and
// every record before it kept, though its length runs past the end as a
// corrupt one would.
func TestTornLastRecordIsDropped(t *testing.T) {
	for _, tc := range []struct {
		name string
		cut  int // bytes into the last frame
	}{
		{"in the header", frameHeader / 2},
		{"in the payload", frameHeader + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, 0, 200)
			path := filepath.Join(dir, segmentName(1))
			ends := recordEnds(t, path)
			cut := ends[len(ends)-2] + tc.cut
			if err := os.Truncate(path, int64(cut)); err != nil {
				t.Fatal(err)
			}
			logs := &testlog.Buffer{}
			j, rec := open(t, dir, logs)
			defer closeJournal(t, j)
			checkRecords(t, rec, 0, 199)
			want := fmt.Sprintf("dropped %d byte(s) from byte %d, after record 199: record cut short", tc.cut, ends[len(ends)-2])
			if !strings.Contains(rec.Dropped, want) || !strings.Contains(logs.String(), "torn or corrupt tail dropped") {
				t.Fatalf("dropped %q, log %q; want %q", rec.Dropped, logs.String(), want)
			}
		})
	}
}

func TestSnapshotCompactsAndRecovers(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, nil)
	for i := 0; i < 10; i++ {
		j.Append(record(i))
	}
	seq := j.Rotate()
	for i := 10; i < 15; i++ {
		j.Append(record(i))
	}
	if err := j.WriteSnapshot(seq, []byte("state after 10")); err != nil {
		t.Fatal(err)
	}
	if err := j.WaitDurable(15); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(dir, "*"))
	if len(names) != 2 || filepath.Base(names[0]) != segmentName(11) || filepath.Base(names[1]) != snapshotName(10) {
		t.Fatalf("files %v, want the segment from 11 and the snapshot at 10", names)
	}
	j, rec := open(t, dir, nil)
	defer closeJournal(t, j)
	if string(rec.Snapshot) != "state after 10" || rec.SnapshotSeq != 10 {
		t.Fatalf("snapshot %q at %d", rec.Snapshot, rec.SnapshotSeq)
	}
	checkRecords(t, rec, 10, 5)
}

func TestCorruptSnapshotRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	j, seq := snapshotted(t, dir)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, snapshotName(seq))
	b, _ := os.ReadFile(path)
	b[len(b)-2] ^= 4
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("Open with a corrupt snapshot: %v, want a refusal naming the checksum", err)
	}
}

func TestDamageBeforeTheTailRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir, nil)
	for i := 0; i < 5; i++ {
		j.Append(record(i))
	}
	j.Rotate()
	if err := j.WaitDurable(j.Append(record(5))); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, segmentName(1))
	b, _ := os.ReadFile(path)
	b[len(segmentMagic)+frameHeader] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := Open(Options{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "later segments exist") {
		t.Fatalf("Open with a damaged older segment: %v, want a refusal", err)
	}
}

func TestParseSyncPolicy(t *testing.T) {
	for in, want := range map[string]SyncPolicy{"": SyncFsync, "fsync": SyncFsync, "write": SyncWrite} {
		if got, err := ParseSyncPolicy(in); err != nil || got != want {
			t.Errorf("ParseSyncPolicy(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseSyncPolicy("sometimes"); err == nil || !strings.Contains(err.Error(), "fsync or write") {
		t.Errorf("ParseSyncPolicy(sometimes): %v", err)
	}
}

// TestMissingSegmentAfterTheSnapshotRefusesToStart: the segment after a
// snapshot exists whenever the snapshot does (Rotate makes it first);
// without it the records after the snapshot are gone, and the journal
// refuses to open instead of silently forgetting them. So it does with an
// older segment the snapshot covers left beside it (a crash between
// writing the snapshot and removing that segment): it opened, started
// from the snapshot, and forgot every record after it.
func TestMissingSegmentAfterTheSnapshotRefusesToStart(t *testing.T) {
	for _, stale := range []bool{false, true} {
		dir := t.TempDir()
		j, seq := snapshotted(t, dir)
		last := j.Append(record(1))
		if err := j.WaitDurable(last); err != nil {
			t.Fatal(err)
		}
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, segmentName(seq+1))); err != nil {
			t.Fatal(err)
		}
		if stale {
			if err := os.WriteFile(filepath.Join(dir, segmentName(1)), []byte(segmentMagic), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		_, _, err := Open(Options{Dir: dir})
		if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), segmentName(seq+1)) {
			t.Fatalf("Open without the segment after the snapshot (a covered segment left beside it: %v): %v, want a refusal naming it", stale, err)
		}
	}
}

// snapshotted opens a journal in dir with one record and a snapshot after
// it, and returns it with the snapshot's record.
func snapshotted(t *testing.T, dir string) (*Journal, uint64) {
	t.Helper()
	j, _ := open(t, dir, nil)
	j.Append(record(0))
	seq := j.Rotate()
	if err := j.WriteSnapshot(seq, []byte("the state")); err != nil {
		t.Fatal(err)
	}
	return j, seq
}

// TestResyncSearchIsBounded: the search for complete frames after damage
// checksums a bounded number of bytes. A stretch of garbage whose every
// offset reads as a length that fits (here 64 KiB, in a 1 MiB stretch)
// would otherwise cost a checksum over that length per byte; past the
// budget the answer is unknown (-1), which recovery refuses like frames
// found, rather than drop what may be records.
func TestResyncSearchIsBounded(t *testing.T) {
	garbage := bytes.Repeat([]byte{0x00, 0x00, 0x01, 0x00}, 1<<18) // every length 64 KiB
	old := resyncBudget
	resyncBudget = 4 << 20
	defer func() { resyncBudget = old }()
	if k := framesAfter(garbage, 0); k != -1 {
		t.Fatalf("framesAfter over garbage = %d, want -1 once the budget is spent", k)
	}
	if msg := followingFrames(-1); !strings.Contains(msg, "may follow") {
		t.Fatalf("message for an unknown count: %q", msg)
	}
}
