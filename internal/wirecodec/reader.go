package wirecodec

import (
	"encoding/binary"
	"errors"
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
// String allocates.
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

// Remaining is the number of bytes not read yet.
func (r *Reader) Remaining() int { return len(r.b) - r.pos }

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
	if n := r.Remaining(); r.err == nil && n != 0 {
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
func (r *Reader) Uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.pos:])
	if n <= 0 {
		r.varintError(n)
		return 0
	}
	r.pos += n
	return v
}

// Varint reads a zig-zagged signed varint.
func (r *Reader) Varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b[r.pos:])
	if n <= 0 {
		r.varintError(n)
		return 0
	}
	r.pos += n
	return v
}

func (r *Reader) varintError(n int) {
	if n == 0 {
		r.fail("message ends inside an integer")
	} else {
		r.fail("integer overflows 64 bits")
	}
}

// Uint32 reads an unsigned varint that must fit in 32 bits.
func (r *Reader) Uint32() uint32 {
	at := r.pos
	v := r.Uvarint()
	if v > 1<<32-1 {
		r.pos = at
		r.fail("integer " + strconv.FormatUint(v, 10) + " overflows 32 bits")
		return 0
	}
	return uint32(v)
}

// Int32 reads a signed varint that must fit in 32 bits.
func (r *Reader) Int32() int32 {
	at := r.pos
	v := r.Varint()
	if v < -1<<31 || v > 1<<31-1 {
		r.pos = at
		r.fail("integer " + strconv.FormatInt(v, 10) + " overflows 32 bits")
		return 0
	}
	return int32(v)
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
	if left := r.Remaining(); n > uint64(left/min) {
		r.pos = at
		r.fail("length " + strconv.FormatUint(n, 10) + " is beyond the " + strconv.Itoa(left) + " byte(s) left")
		return 0
	}
	return int(n)
}

// String reads a uvarint length and that many bytes.
func (r *Reader) String() string {
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

// Strings reads a uvarint count and that many strings; nil when the count
// is 0.
func (r *Reader) Strings() []string {
	n := r.Count(1)
	if n == 0 {
		return nil
	}
	ss := make([]string, n)
	for i := range ss {
		ss[i] = r.String()
	}
	return ss
}
