package scheduler

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// goldenRecords splits a file of testdata, records each behind a
// two-byte length, into the records' bytes: records-v1.bin as commit
// 0cc4a33 wrote them, records-v2.bin as they were written once
// skip_cache_lookup was recorded (the last Execute has it set),
// records-v3.bin as they were written once the working directory was
// (the same records, each Execute's known, the last one's "sub/dir"),
// expire-v3.bin an expiry as version 3 (commit 11548d0) wrote it, and
// records-v4.bin as they are written since an expiry names what it
// forgot (records-v3.bin's, then an expiry of operations/hit-1 and
// operations/hit-2).
func goldenRecords(t *testing.T, file string) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for len(b) > 0 {
		n := int(b[0])<<8 | int(b[1])
		out = append(out, b[2:2+n])
		b = b[2+n:]
	}
	return out
}

// The record format does not change under the code that writes it: each
// golden record, decoded and encoded again, gives its bytes back, the
// Execute that had skip_cache_lookup still has it, the last one its
// working directory, and the expiry the operations it forgot.
func TestRecordsEncodeToTheirGoldenBytes(t *testing.T) {
	golden := goldenRecords(t, "records-v4.bin")
	if r, err := decodeRecord(golden[8]); err != nil || r.kind != recExpire || r.expiredByTime ||
		fmt.Sprint(r.expired) != "[operations/hit-1 operations/hit-2]" {
		t.Fatalf("record 8: %+v, %v; want an expiry naming operations/hit-1 and operations/hit-2", r, err)
	}
	for i, golden := range golden {
		r, err := decodeRecord(golden)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if again, err := encodeRecord(r); err != nil || !bytes.Equal(again, golden) {
			t.Fatalf("record %d encodes to\n% x, %v\nwant\n% x", i, again, err, golden)
		}
		if skip, want := r.sub != nil && r.sub.skipCacheLookup, i == 5; skip != want {
			t.Fatalf("record %d: skip_cache_lookup %v, want %v", i, skip, want)
		}
		if i == 5 && (!r.sub.spec.workingDirKnown || r.sub.spec.workingDir != "sub/dir") {
			t.Fatalf("record 5: working directory %q (known %v), want sub/dir", r.sub.spec.workingDir, r.sub.spec.workingDirKnown)
		}
	}
}

// wantReadAsVersion4 checks that each golden record of an older version
// is still read, with an Execute's working directory unknown before
// version 3, and encodes again as version 4: the same fields, with
// executeTail after an Execute's (what the version lacked, as version 4
// writes it unset). The version tests share it so that each older format
// is held to the same.
func wantReadAsVersion4(t *testing.T, version int, executeTail ...byte) {
	t.Helper()
	for i, old := range goldenRecords(t, fmt.Sprintf("records-v%d.bin", version)) {
		r, err := decodeRecord(old)
		if err != nil {
			t.Fatalf("version %d record %d: %v", version, i, err)
		}
		want := append([]byte{4}, old[1:]...)
		if r.kind == recExecute {
			if version < 3 && r.sub.spec.workingDirKnown {
				t.Fatalf("version %d record %d: a version %d Execute's working directory is known", version, i, version)
			}
			want = append(want, executeTail...)
		}
		if again, err := encodeRecord(r); err != nil || !bytes.Equal(again, want) {
			t.Fatalf("version %d record %d encodes to\n% x, %v\nwant\n% x", version, i, again, err, want)
		}
	}
}

// Version 3 records (of the kinds other than an expiry) are the fields
// of version 4: encoded again, each is its bytes under the new version.
func TestVersion3RecordsReadAsTheyWere(t *testing.T) {
	wantReadAsVersion4(t, 3)
}

// A version 3 expiry, which said only when, is still read, as one that
// names no operations and is replayed by the retention in force
// (replayExpire); it cannot be written again as version 4, where naming
// none would forget nothing.
func TestVersion3ExpiryIsReadAsByTime(t *testing.T) {
	old := goldenRecords(t, "expire-v3.bin")
	if len(old) != 1 {
		t.Fatalf("%d records in testdata/expire-v3.bin, want 1", len(old))
	}
	r, err := decodeRecord(old[0])
	if err != nil || r.kind != recExpire || !r.expiredByTime || r.expired != nil ||
		!r.at.Equal(time.Date(2027, 1, 15, 8, 1, 0, 0, time.UTC)) {
		t.Fatalf("version 3 expiry read as %+v, %v; want an expiry by time at 08:01 naming none", r, err)
	}
	if _, err := encodeRecord(r); err == nil {
		t.Fatal("a version 3 expiry was written as version 4, where it would forget nothing")
	}
}

// Version 2 records, written before the working directory was recorded,
// are still read, as Executes whose working directory is not known:
// encoded again, each is the same fields as version 4, with "unknown"
// and an empty directory after an Execute's.
func TestVersion2RecordsReadWithoutTheWorkingDirectory(t *testing.T) {
	wantReadAsVersion4(t, 2, 0, 0)
}

// Version 1 records, written before skip_cache_lookup was recorded, are
// still read, as Executes without it: encoded again, each is the same
// fields as version 4, with skip_cache_lookup false and the working
// directory unknown after an Execute's.
func TestVersion1RecordsReadWithoutSkipCacheLookup(t *testing.T) {
	wantReadAsVersion4(t, 1, 0, 0, 0)
	if _, err := decodeRecord([]byte{5}); err == nil || !strings.Contains(err.Error(), "record version 5") {
		t.Fatalf("a record of a later version: %v, want refused naming its version", err)
	}
}

// A record or snapshot cut anywhere is refused as malformed.
func TestTruncatedRecordsAndSnapshotsAreRefused(t *testing.T) {
	state, err := os.ReadFile("testdata/state-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	for _, record := range [][]byte{goldenRecords(t, "records-v3.bin")[5], goldenRecords(t, "records-v4.bin")[8]} {
		for i := 1; i < len(record); i++ {
			if _, err := decodeRecord(record[:i]); !errors.Is(err, wirecodec.ErrMalformed) {
				t.Fatalf("record cut at %d/%d: %v, want a malformed journal record", i, len(record), err)
			}
		}
	}
	for i := 1; i < len(state); i++ {
		if _, err := decodeState(state[:i]); !errors.Is(err, wirecodec.ErrMalformed) {
			t.Fatalf("snapshot cut at %d/%d: %v, want a malformed scheduler state", i, len(state), err)
		}
	}
}

// TestNewerJournalSaysWhatToDo: a record of a version this scheduler does
// not read yet, from a newer Paddock (a downgrade), is refused saying so
// and what to do, not only by its version numbers.
func TestNewerJournalSaysWhatToDo(t *testing.T) {
	_, err := decodeRecord(binary.AppendUvarint(nil, recordVersion+1))
	if err == nil || !strings.Contains(err.Error(), "newer Paddock") || !strings.Contains(err.Error(), "journal_dir") {
		t.Fatalf("a record of version %d: %v; want a refusal naming a newer Paddock and journal_dir", recordVersion+1, err)
	}
}
