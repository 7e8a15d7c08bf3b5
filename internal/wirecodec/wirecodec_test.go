package wirecodec

import (
	"bytes"
	"errors"
	"io"
	"math"
	"reflect"
	"strings"
	"testing"
)

// message writes one of every field type, with edge values.
func message() []byte {
	w := NewWriter(nil)
	w.Byte(7)
	w.Uvarint(math.MaxUint64)
	w.Varint(math.MinInt64)
	w.Uvarint(math.MaxUint32)
	w.Varint(math.MinInt32)
	w.Bool(true)
	w.Bool(false)
	w.Str("ünï\x00code")
	w.Str("")
	w.Blob([]byte{0, 1, 2})
	w.Blob(nil)
	w.StringList([]string{"a", "", "bc"})
	w.StringList(nil)
	return w.Bytes()
}

type decoded struct {
	B          byte
	U          uint64
	I          int64
	U32        uint32
	I32        int32
	T, F       bool
	S, Empty   string
	Blob, None []byte
	SS, NoSS   []string
}

func decode(b []byte) (decoded, error) {
	r := NewReader(b, "test message")
	d := decoded{B: r.Byte(), U: r.Uvarint(), I: r.Varint(), U32: r.Uint32(), I32: r.Int32(), T: r.Bool(), F: r.Bool(),
		S: r.Str(), Empty: r.Str(), Blob: r.Blob(), None: r.Blob(), SS: r.StringList(), NoSS: r.StringList()}
	return d, r.End()
}

func TestRoundTrip(t *testing.T) {
	got, err := decode(message())
	if err != nil {
		t.Fatal(err)
	}
	want := decoded{B: 7, U: math.MaxUint64, I: math.MinInt64, U32: math.MaxUint32, I32: math.MinInt32, T: true,
		S: "ünï\x00code", Blob: []byte{0, 1, 2}, SS: []string{"a", "", "bc"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
	}
}

// The bytes are the documented format: a change here breaks every
// message on disk and on the wire.
func TestFormat(t *testing.T) {
	w := NewWriter([]byte{0xaa})
	w.Uvarint(300)
	w.Varint(-2)
	w.Bool(true)
	w.Str("hi")
	w.Blob([]byte{9})
	w.StringList([]string{"x"})
	w.Uvarint(1, 2)
	w.Str("a", "")
	want := []byte{0xaa, 0xac, 0x02, 0x03, 1, 2, 'h', 'i', 1, 9, 1, 1, 'x', 1, 2, 1, 'a', 0}
	if !bytes.Equal(w.Bytes(), want) {
		t.Fatalf("wrote % x, want % x", w.Bytes(), want)
	}
}

// Every prefix of a message, and the message with a byte more, is an
// error wrapping ErrMalformed that names the message; nothing panics.
func TestTruncatedAndTrailing(t *testing.T) {
	b := message()
	for i := 0; i < len(b); i++ {
		_, err := decode(b[:i])
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "malformed test message at byte ") {
			t.Fatalf("cut at %d/%d: %v", i, len(b), err)
		}
	}
	if _, err := decode(append(b, 0)); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "1 unexpected byte(s) at the end") {
		t.Fatalf("trailing byte: %v", err)
	}
}

func TestBadValues(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		read func(r *Reader)
		msg  string
	}{
		{"bool 2", []byte{2}, func(r *Reader) { r.Bool() }, "at byte 0: boolean byte 2 is neither 0 nor 1"},
		{"varint past 64 bits", bytes.Repeat([]byte{0xff}, 11), func(r *Reader) { r.Uvarint() }, "overflows 64 bits"},
		{"uint32 overflow", []byte{0x80, 0x80, 0x80, 0x80, 0x10}, func(r *Reader) { r.Uint32() }, "integer 4294967296 overflows 32 bits"},
		{"int32 overflow", []byte{0x80, 0x80, 0x80, 0x80, 0x10}, func(r *Reader) { r.Int32() }, "overflows 32 bits"},
		{"string longer than the message", []byte{5, 'a'}, func(r *Reader) { r.Str() }, "at byte 0: length 5 is beyond the 1 byte(s) left"},
		{"huge count", []byte{0xff, 0xff, 0xff, 0xff, 0x0f}, func(r *Reader) { r.StringList() }, "length 4294967295 is beyond"},
		{"count of wide items", []byte{0, 3, 1, 2, 3, 4, 5}, func(r *Reader) { r.Byte(); r.Count(2) }, "at byte 1: length 3 is beyond the 5 byte(s) left"},
	} {
		r := NewReader(c.in, "test message")
		c.read(r)
		if err := r.Err(); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: %v, want …%s", c.name, err, c.msg)
		}
	}
}

// After the first error every read returns a zero value and the error
// stays the first one.
func TestErrorIsSticky(t *testing.T) {
	r := NewReader([]byte{2, 1, 'x', 1}, "test message")
	if r.Bool() || r.Str() != "" || r.Uvarint() != 0 || r.Blob() != nil || r.StringList() != nil || r.Byte() != 0 {
		t.Fatal("a read after an error returned a value")
	}
	cause := errors.New("other")
	r.Fail(cause)
	if err := r.End(); errors.Is(err, cause) || !strings.Contains(err.Error(), "boolean") {
		t.Fatalf("End: %v, want the first error", err)
	}
	var de *DecodeError
	if !errors.As(r.Err(), &de) || de.What != "test message" || de.Offset != 0 {
		t.Fatalf("error %#v", r.Err())
	}
}

// A caller's own check on a decoded value is the message's error too.
func TestFail(t *testing.T) {
	r := NewReader([]byte{9, 0}, "test message")
	cause := errors.New("unknown kind 9")
	if r.Byte() == 9 {
		r.Fail(cause)
	}
	err := r.End()
	if !errors.Is(err, ErrMalformed) || !errors.Is(err, cause) || err.Error() != "malformed test message at byte 1: unknown kind 9" {
		t.Fatalf("%v", err)
	}
}

func TestFrames(t *testing.T) {
	w := NewWriter(nil)
	for _, s := range []string{"first", "second"} {
		w.BeginFrame()
		w.Str(s)
		w.EndFrame()
	}
	stream := bytes.NewReader(w.Bytes())
	var buf []byte
	for _, want := range []string{"first", "second"} {
		var err error
		if buf, err = ReadFrame(stream, buf, 64, "test frame"); err != nil {
			t.Fatal(err)
		}
		if r := NewReader(buf, "test frame"); r.Str() != want || r.End() != nil {
			t.Fatalf("frame % x, want %q", buf, want)
		}
	}
	if _, err := ReadFrame(stream, buf, 64, "test frame"); err != io.EOF {
		t.Fatalf("after the last frame: %v, want io.EOF", err)
	}
}

func TestBadFrames(t *testing.T) {
	for name, in := range map[string][]byte{
		"cut header":       {3, 0},
		"cut body":         {3, 0, 0, 0, 'a'},
		"zero length":      {0, 0, 0, 0},
		"beyond the limit": {65, 0, 0, 0},
		"4 GiB":            {0xff, 0xff, 0xff, 0xff},
	} {
		_, err := ReadFrame(bytes.NewReader(in), nil, 64, "test frame")
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "malformed test frame") {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// ReadList reads each item with the function given, and refuses a count
// the bytes left cannot hold at the given size per item.
func TestReadList(t *testing.T) {
	w := NewWriter(nil)
	w.Uvarint(2, 300, 5)
	r := NewReader(w.Bytes(), "test message")
	if got := ReadList(r, 1, r.Uvarint); !reflect.DeepEqual(got, []uint64{300, 5}) || r.End() != nil {
		t.Fatalf("ReadList: %v, %v", got, r.Err())
	}
	r = NewReader(w.Bytes(), "test message")
	if got := ReadList(r, 2, r.Uvarint); got != nil || !errors.Is(r.Err(), ErrMalformed) {
		t.Fatalf("2 items of 2 bytes in 3: %v, %v", got, r.Err())
	}
	r = NewReader([]byte{0}, "test message")
	if got := ReadList(r, 1, r.Str); got != nil || r.End() != nil {
		t.Fatalf("empty list: %#v, %v", got, r.Err())
	}
}

func TestEndFrameWithoutBeginFramePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic")
		}
	}()
	var w Writer
	w.Str("abcd")
	w.EndFrame()
}

// Whatever the input, reading never panics, and what a Reader allocates
// is bounded by the input's size.
func FuzzReader(f *testing.F) {
	f.Add(message())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decode(b)
		if err != nil {
			return
		}
		if n := len(d.S) + len(d.Blob) + len(d.SS); n > len(b) {
			t.Fatalf("decoded %d bytes from %d", n, len(b))
		}
	})
}
