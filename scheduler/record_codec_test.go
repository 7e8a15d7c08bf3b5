package scheduler

import (
	"bytes"
	"errors"
	"os"
	"testing"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// The record format does not change under the code that writes it:
// decoding testdata/records-v1.bin, written by commit 0cc4a33, and
// encoding each record again gives its bytes back.
func TestRecordsEncodeToTheirGoldenBytes(t *testing.T) {
	b, err := os.ReadFile("testdata/records-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; len(b) > 0; i++ {
		n := int(b[0])<<8 | int(b[1])
		golden := b[2 : 2+n]
		r, err := decodeRecord(golden)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		again, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, golden) {
			t.Fatalf("record %d encodes to\n% x\nwant\n% x", i, again, golden)
		}
		b = b[2+n:]
	}
}

// A record or snapshot cut anywhere is refused as malformed, and says
// what it was reading.
func TestTruncatedRecordsAndSnapshotsAreRefused(t *testing.T) {
	b, err := os.ReadFile("testdata/records-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	record := b[2 : 2+(int(b[0])<<8|int(b[1]))]
	for i := 1; i < len(record); i++ {
		if _, err := decodeRecord(record[:i]); !errors.Is(err, wirecodec.ErrMalformed) {
			t.Fatalf("record cut at %d/%d: %v, want a malformed journal record", i, len(record), err)
		}
	}
	state, err := os.ReadFile("testdata/state-v1.bin")
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(state); i++ {
		if _, err := decodeState(state[:i]); !errors.Is(err, wirecodec.ErrMalformed) {
			t.Fatalf("snapshot cut at %d/%d: %v, want a malformed scheduler state", i, len(state), err)
		}
	}
}
