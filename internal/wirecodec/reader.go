package wirecodec

import (
	"encoding/binary"
	"errors"
	"math"
	"strconv"
)

// ErrMalformed is wrapped by every error of a Reader and of ReadFrame.
var ErrMalformed = errors.New("malformed message")

// DecodeError is a Reader's error: what message it was reading, where, and
// what was wrong there.
type DecodeError struct {
	What   string // the message, as the Reader was told ("init plan")
	Offset int    // the byte where the failed field starts
	Err    error  // what was wrong
}

func (e *DecodeError) Error() string {
	return "malformed " + e.What + " at byte " + strconv.Itoa(e.Offset) + ": " + e.Err.Error()
}

// Unwrap returns ErrMalformed and the cause, for errors.Is.
func (e *DecodeError) Unwrap() []error { return []error{ErrMalformed, e.Err} }

// Reader reads fields in the order a Writer wrote them. After the first
// error every read returns a zero value and Err keeps that error (see the
// package comment). It does not retain b beyond its reads: Blob copies,
// Str allocates.
type Reader struct {
	b    []byte
	pos  int
	what string
	err  error
}

// NewReader reads b, a message that errors call what ("init plan").
func NewReader(b []byte, what string) *Reader { return &Reader{b: b, what: what} }

// Err is the first error, or nil.
func (r *Reader) Err() error { return r.err }

// remaining is the number of bytes not read yet.
func (r *Reader) remaining() int { return len(r.b) - r.pos }

// Fail records err (with the current offset) unless an error is already
// recorded: for a field that decodes but whose value is wrong.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = &DecodeError{What: r.what, Offset: r.pos, Err: err}
	}
}

func (r *Reader) fail(problem string) { r.Fail(errors.New(problem)) }

// End returns the first error, or an error if bytes are left unread.
func (r *Reader) End() error {
	if n := r.remaining(); r.err == nil && n != 0 {
		r.fail(strconv.Itoa(n) + " unexpected byte(s) at the end")
	}
	return r.err
}

// Byte reads one raw byte.
func (r *Reader) Byte() byte {
	if r.err != nil {
		return 0
	}
	if r.pos >= len(r.b) {
		r.fail("message ends before a byte")
		return 0
	}
	v := r.b[r.pos]
	r.pos++
	return v
}

// Uvarint reads an unsigned varint.
func (r *Reader) Uvarint() uint64 { return readVarint(r, binary.Uvarint) }

// Varint reads a zig-zagged signed varint.
func (r *Reader) Varint() int64 { return readVarint(r, binary.Varint) }

func readVarint[T uint64 | int64](r *Reader, decode func([]byte) (T, int)) T {
	if r.err != nil {
		return 0
	}
	v, n := decode(r.b[r.pos:])
	switch {
	case n == 0:
		r.fail("message ends inside an integer")
	case n < 0:
		r.fail("integer overflows 64 bits")
	default:
		r.pos += n
	}
	return v
}

// Uint32 reads an unsigned varint that must fit in 32 bits.
func (r *Reader) Uint32() uint32 { return uint32(read32(r, r.Uvarint, 0, math.MaxUint32)) }

// Int32 reads a signed varint that must fit in 32 bits.
func (r *Reader) Int32() int32 { return int32(read32(r, r.Varint, math.MinInt32, math.MaxInt32)) }

// read32 reads a varint with read and checks it is within [min, max].
func read32[T uint64 | int64](r *Reader, read func() T, min, max T) T {
	at := r.pos
	v := read()
	if v < min || v > max {
		r.pos = at
		digits := strconv.FormatUint(uint64(v), 10)
		if v < 0 {
			digits = strconv.FormatInt(int64(v), 10)
		}
		r.fail("integer " + digits + " overflows 32 bits")
		return 0
	}
	return v
}

// Bool reads a byte that must be 0 or 1.
func (r *Reader) Bool() bool {
	if r.err != nil {
		return false
	}
	if r.pos >= len(r.b) {
		r.fail("message ends before a boolean")
		return false
	}
	v := r.b[r.pos]
	if v > 1 {
		r.fail("boolean byte " + strconv.Itoa(int(v)) + " is neither 0 nor 1")
		return false
	}
	r.pos++
	return v == 1
}

// Count reads a length or a count of items that take at least min bytes
// each (min ≥ 1), refusing one the bytes left cannot hold: what a caller
// allocates for it is bounded by the message's size.
func (r *Reader) Count(min int) int {
	min = max(min, 1)
	at := r.pos
	n := r.Uvarint()
	if r.err != nil {
		return 0
	}
	if left := r.remaining(); n > uint64(left/min) {
		r.pos = at
		r.fail("length " + strconv.FormatUint(n, 10) + " is beyond the " + strconv.Itoa(left) + " byte(s) left")
		return 0
	}
	return int(n)
}

// Str reads a uvarint length and that many bytes.
func (r *Reader) Str() string {
	n := r.Count(1)
	if n == 0 {
		return ""
	}
	s := string(r.b[r.pos : r.pos+n])
	r.pos += n
	return s
}

// Blob reads a uvarint length and a copy of that many bytes; nil when the
// length is 0.
func (r *Reader) Blob() []byte {
	n := r.Count(1)
	if n == 0 {
		return nil
	}
	p := append([]byte(nil), r.b[r.pos:r.pos+n]...)
	r.pos += n
	return p
}

// StringList reads a list StringList wrote; nil when its count is 0.
func (r *Reader) StringList() []string { return ReadList(r, 1, r.Str) }

// ReadList reads a list: a count of items that take at least min bytes
// each (refused if the bytes left cannot hold it, see Count), then each
// item with read. It returns nil when the count is 0.
func ReadList[T any](r *Reader, min int, read func() T) []T {
	n := r.Count(min)
	if n == 0 {
		return nil
	}
	items := make([]T, n)
	for i := range items {
		items[i] = read()
	}
	return items
}
