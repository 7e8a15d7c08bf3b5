package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"path/filepath"
	"strconv"
	"strings"
)

// On disk, a journal directory holds:
//
//	log-<first seq, 20 digits>   a segment: segmentMagic, then frames
//	snap-<seq, 20 digits>        a snapshot of the state after record seq
//
// A frame is a record: its length (uint32, little-endian), the CRC-32C of
// the length's four bytes and the payload (uint32), then the payload. The
// checksum covers the length so that a flipped bit there is caught too,
// rather than sending the reader off into the middle of another record.
//
// A snapshot file is snapMagic, the seq it covers (uint64), the payload's
// length (uint64), the CRC-32C of those sixteen bytes and the payload
// (uint32), then the payload. It is written under a temporary name and
// renamed, so it is either whole or absent.

const (
	segmentMagic = "PDKLOG1\n"
	snapMagic    = "PDKSNP1\n"
	frameHeader  = 8
	snapHeader   = len(snapMagic) + 8 + 8 + 4
	// MaxRecord bounds one record, so a corrupt length cannot make the
	// reader allocate gigabytes.
	MaxRecord = 64 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendFrame appends rec as a frame to buf.
func appendFrame(buf, rec []byte) []byte {
	var h [frameHeader]byte
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(rec)))
	crc := crc32.Update(crc32.Checksum(h[0:4], castagnoli), castagnoli, rec)
	binary.LittleEndian.PutUint32(h[4:8], crc)
	buf = append(buf, h[:]...)
	return append(buf, rec...)
}

// errTorn is a frame cut short: the bytes end inside it.
var errTorn = errors.New("record cut short")

// errPastEnd is a frame whose length runs past the end of the bytes. A
// crash in the middle of its append leaves that at the end of the last
// segment, and so does a length damaged in place in the middle of it: the
// frame alone cannot tell the two apart, only whether complete frames
// follow it can (framesAfter), so readFrame does not call it torn.
var errPastEnd = errors.New("length runs past the end of the segment")

// readFrame reads the frame at the start of b and returns its payload and
// its total size. It fails with errTorn when b ends inside the frame's
// header, with errPastEnd (wrapped) when the frame's length runs past the
// end of b, and with another error when the frame is corrupt.
func readFrame(b []byte) (rec []byte, n int, err error) {
	if len(b) < frameHeader {
		return nil, 0, errTorn
	}
	size := binary.LittleEndian.Uint32(b[0:4])
	want := binary.LittleEndian.Uint32(b[4:8])
	if size > MaxRecord {
		return nil, 0, fmt.Errorf("record length %d is above the maximum %d (corrupt length)", size, MaxRecord)
	}
	end := frameHeader + int(size)
	if len(b) < end {
		return nil, 0, fmt.Errorf("%w: %d byte(s), with %d left", errPastEnd, size, len(b)-frameHeader)
	}
	got := crc32.Update(crc32.Checksum(b[0:4], castagnoli), castagnoli, b[frameHeader:end])
	if got != want {
		return nil, 0, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	return b[frameHeader:end], end, nil
}

func segmentName(first uint64) string { return fmt.Sprintf("log-%020d", first) }
func snapshotName(seq uint64) string  { return fmt.Sprintf("snap-%020d", seq) }

// parseName returns the kind ("log" or "snap") and number of a journal file
// name, or ok false for any other name.
func parseName(name string) (kind string, n uint64, ok bool) {
	kind, num, found := strings.Cut(filepath.Base(name), "-")
	if !found || (kind != "log" && kind != "snap") || len(num) != 20 {
		return "", 0, false
	}
	n, err := strconv.ParseUint(num, 10, 64)
	return kind, n, err == nil
}
