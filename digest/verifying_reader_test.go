package digest

import (
	"bytes"
	"errors"
	"io"
	"testing"
	"testing/iotest"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

var (
	errBad   = errors.New("bad")
	errShort = errors.New("short")
)

// verifyCalls counts the store's callbacks and records what Short got.
type verifyCalls struct {
	bad, short int
	missing    int64
	shortErr   error
}

func (c *verifyCalls) checks(trailing bool) VerifyChecks {
	return VerifyChecks{
		Bad: func() error { c.bad++; return errBad },
		Short: func(missing int64, err error) error {
			c.short++
			c.missing, c.shortErr = missing, err
			return errShort
		},
		Trailing: trailing,
	}
}

// readAll reads r to its end with reads of at most chunk bytes each and
// returns what it served and the error that ended it (nil for io.EOF).
func readAll(r io.Reader, chunk int) ([]byte, error) {
	var out []byte
	buf := make([]byte, chunk)
	for {
		n, err := r.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

func TestVerifyingReaderServesAGoodBlobFromEveryOffset(t *testing.T) {
	blob := []byte("alpha bravo charlie delta echo foxtrot")
	d := FromBytes(repb.DigestFunction_SHA256, blob)
	for _, chunk := range []int{1, 7, 1 << 10} {
		for offset := int64(0); offset <= d.SizeBytes(); offset++ {
			var c verifyCalls
			r := NewVerifyingReader(io.NopCloser(bytes.NewReader(blob)), d, offset, c.checks(true))
			got, err := readAll(r, chunk)
			if err != nil || !bytes.Equal(got, blob[offset:]) || c.bad+c.short != 0 {
				t.Fatalf("chunk %d offset %d: served %q, %v (bad %d short %d); want %q", chunk, offset, got, err, c.bad, c.short, blob[offset:])
			}
		}
	}
}

func TestVerifyingReaderNeverServesACorruptBlobWhole(t *testing.T) {
	blob := []byte("alpha bravo charlie delta echo foxtrot")
	d := FromBytes(repb.DigestFunction_SHA256, blob)
	corrupt := bytes.Clone(blob)
	corrupt[3] ^= 1
	for _, chunk := range []int{1, 5, 1 << 10} {
		for offset := int64(0); offset < d.SizeBytes(); offset++ {
			var c verifyCalls
			r := NewVerifyingReader(io.NopCloser(bytes.NewReader(corrupt)), d, offset, c.checks(false))
			got, err := readAll(r, chunk)
			if err != errBad || c.bad != 1 {
				t.Fatalf("chunk %d offset %d: error %v after %d Bad calls, want errBad after 1", chunk, offset, err, c.bad)
			}
			if want := int(d.SizeBytes() - offset); len(got) >= want {
				t.Fatalf("chunk %d offset %d: served %d bytes of a corrupt %d-byte range", chunk, offset, len(got), want)
			}
			// The error is sticky, and Bad is not called again.
			if n, err := r.Read(make([]byte, 8)); n != 0 || err != errBad || c.bad != 1 {
				t.Fatalf("chunk %d offset %d: a later Read returned %d, %v (Bad called %d times)", chunk, offset, n, err, c.bad)
			}
		}
	}
}

func TestVerifyingReaderReportsASourceThatEndsEarly(t *testing.T) {
	blob := []byte("alpha bravo charlie delta")
	d := FromBytes(repb.DigestFunction_SHA256, blob)
	for _, tc := range []struct {
		name         string
		cut, offset  int64
		wantServed   int
		wantMissing  int64
		wantShortErr error
	}{
		{"in the served range", 20, 4, 16, 5, io.EOF},
		{"before the offset", 3, 10, 0, 22, io.EOF},
		{"empty", 0, 0, 0, 25, io.EOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c verifyCalls
			r := NewVerifyingReader(io.NopCloser(bytes.NewReader(blob[:tc.cut])), d, tc.offset, c.checks(false))
			got, err := readAll(r, 4)
			if err != errShort || c.short != 1 || c.bad != 0 {
				t.Fatalf("error %v after %d Short and %d Bad calls, want errShort after 1 Short", err, c.short, c.bad)
			}
			if len(got) != tc.wantServed || c.missing != tc.wantMissing || c.shortErr != tc.wantShortErr {
				t.Fatalf("served %d bytes, Short(%d, %v); want %d bytes, Short(%d, %v)", len(got), c.missing, c.shortErr, tc.wantServed, tc.wantMissing, tc.wantShortErr)
			}
		})
	}
}

func TestVerifyingReaderPassesTheSourcesErrorToShort(t *testing.T) {
	blob := []byte("alpha bravo charlie delta")
	d := FromBytes(repb.DigestFunction_SHA256, blob)
	broken := errors.New("connection reset")
	src := io.MultiReader(bytes.NewReader(blob[:10]), iotest.ErrReader(broken))
	var c verifyCalls
	r := NewVerifyingReader(io.NopCloser(src), d, 0, c.checks(false))
	got, err := readAll(r, 4)
	if err != errShort || c.shortErr != broken || c.missing != 15 || len(got) != 10 {
		t.Fatalf("served %d bytes, error %v, Short(%d, %v); want 10 bytes, errShort, Short(15, connection reset)", len(got), err, c.missing, c.shortErr)
	}
}

func TestVerifyingReaderTrailingBytesAreCorruptionOnlyWhenChecked(t *testing.T) {
	blob := []byte("alpha bravo")
	d := FromBytes(repb.DigestFunction_SHA256, blob)
	long := append(bytes.Clone(blob), " charlie"...)
	var c verifyCalls
	if _, err := readAll(NewVerifyingReader(io.NopCloser(bytes.NewReader(long)), d, 0, c.checks(true)), 64); err != errBad || c.bad != 1 {
		t.Fatalf("with Trailing: error %v after %d Bad calls, want errBad after 1", err, c.bad)
	}
	c = verifyCalls{}
	got, err := readAll(NewVerifyingReader(io.NopCloser(bytes.NewReader(long)), d, 0, c.checks(false)), 64)
	if err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("without Trailing: served %q, %v; want the blob's %d bytes only", got, err, len(blob))
	}
}

func TestVerifyingReaderEmptyBlobAndClose(t *testing.T) {
	d := Empty(repb.DigestFunction_SHA256)
	var c verifyCalls
	closed := false
	src := readCloser{Reader: bytes.NewReader(nil), close: func() error { closed = true; return nil }}
	r := NewVerifyingReader(src, d, 0, c.checks(true))
	if n, err := r.Read(make([]byte, 4)); n != 0 || err != io.EOF {
		t.Fatalf("Read of the empty blob = %d, %v; want 0, EOF", n, err)
	}
	if err := r.Close(); err != nil || !closed {
		t.Fatalf("Close = %v, source closed %v", err, closed)
	}
}

type readCloser struct {
	io.Reader
	close func() error
}

func (r readCloser) Close() error { return r.close() }
