package scheduler

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// goldenRecords splits a file of testdata, records each behind a
// two-byte length, into the records' bytes: records-v1.bin as commit
// 0cc4a33 wrote them, records-v2.bin as they were written once
// skip_cache_lookup was recorded (the last Execute has it set), and
// records-v3.bin as they are written since the working directory is
// (the same records, each Execute's known, the last one's "sub/dir").
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
// Execute that had skip_cache_lookup still has it, and the last one its
// working directory.
func TestRecordsEncodeToTheirGoldenBytes(t *testing.T) {
	for i, golden := range goldenRecords(t, "records-v3.bin") {
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

// wantReadAsVersion3 checks that each golden record of an older version
// is still read, with an Execute's working directory unknown, and encodes
// again as version 3: the same fields, with executeTail after an
// Execute's (what the version lacked, as version 3 writes it unset). The
// version tests share it so that each older format is held to the same.
func wantReadAsVersion3(t *testing.T, version int, executeTail ...byte) {
	t.Helper()
	for i, old := range goldenRecords(t, fmt.Sprintf("records-v%d.bin", version)) {
		r, err := decodeRecord(old)
		if err != nil {
			t.Fatalf("version %d record %d: %v", version, i, err)
		}
		want := append([]byte{3}, old[1:]...)
		if r.kind == recExecute {
			if r.sub.spec.workingDirKnown {
				t.Fatalf("version %d record %d: a version %d Execute's working directory is known", version, i, version)
			}
			want = append(want, executeTail...)
		}
		if again, err := encodeRecord(r); err != nil || !bytes.Equal(again, want) {
			t.Fatalf("version %d record %d encodes to\n% x, %v\nwant\n% x", version, i, again, err, want)
		}
	}
}

// Version 2 records, written before the working directory was recorded,
// are still read, as Executes whose working directory is not known:
// encoded again, each is the same fields as version 3, with "unknown"
// and an empty directory after an Execute's.
func TestVersion2RecordsReadWithoutTheWorkingDirectory(t *testing.T) {
	wantReadAsVersion3(t, 2, 0, 0)
}

// Version 1 records, written before skip_cache_lookup was recorded, are
// still read, as Executes without it: encoded again, each is the same
// fields as version 3, with skip_cache_lookup false and the working
// directory unknown after an Execute's.
func TestVersion1RecordsReadWithoutSkipCacheLookup(t *testing.T) {
	wantReadAsVersion3(t, 1, 0, 0, 0)
	if _, err := decodeRecord([]byte{4}); err == nil || !strings.Contains(err.Error(), "record version 4") {
		t.Fatalf("a record of a later version: %v, want refused naming its version", err)
	}
}

// A record or snapshot cut anywhere is refused as malformed.
func TestTruncatedRecordsAndSnapshotsAreRefused(t *testing.T) {
	state, err := os.ReadFile("testdata/state-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	record := goldenRecords(t, "records-v3.bin")[5]
	for i := 1; i < len(record); i++ {
		if _, err := decodeRecord(record[:i]); !errors.Is(err, wirecodec.ErrMalformed) {
			t.Fatalf("record cut at %d/%d: %v, want a malformed journal record", i, len(record), err)
		}
	}
	for i := 1; i < len(state); i++ {
		if _, err := decodeState(state[:i]); !errors.Is(err, wirecodec.ErrMalformed) {
			t.Fatalf("snapshot cut at %d/%d: %v, want a malformed scheduler state", i, len(state), err)
		}
	}
}
