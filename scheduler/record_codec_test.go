package scheduler

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// goldenRecords splits testdata/records-v1.bin, records as commit 0cc4a33
// wrote them (each behind a two-byte length), into the records' bytes.
func goldenRecords(t *testing.T) [][]byte {
	t.Helper()
	b, err := os.ReadFile("testdata/records-v1.bin")
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
// golden record, decoded and encoded again, gives its bytes back.
func TestRecordsEncodeToTheirGoldenBytes(t *testing.T) {
	for i, golden := range goldenRecords(t) {
		r, err := decodeRecord(golden)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if again, err := encodeRecord(r); err != nil || !bytes.Equal(again, golden) {
			t.Fatalf("record %d encodes to\n% x, %v\nwant\n% x", i, again, err, golden)
		}
	}
}

// A record or snapshot cut anywhere is refused as malformed.
func TestTruncatedRecordsAndSnapshotsAreRefused(t *testing.T) {
	state, err := os.ReadFile("testdata/state-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	record := goldenRecords(t)[0]
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
