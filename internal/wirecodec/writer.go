package wirecodec

import "encoding/binary"

// Writer appends fields to a byte slice. The zero Writer is ready to use;
// NewWriter reuses a buffer.
type Writer struct {
	b    []byte
	open int // 1 + the offset of the open frame's header; 0: none
}

// NewWriter returns a Writer that appends to buf.
func NewWriter(buf []byte) *Writer { return &Writer{b: buf} }

// Bytes returns what has been written (aliasing the Writer's buffer).
func (w *Writer) Bytes() []byte { return w.b }

// Byte writes one raw byte (a version or a tag).
func (w *Writer) Byte(v byte) { w.b = append(w.b, v) }

// Uvarint writes each of vs as an unsigned varint.
func (w *Writer) Uvarint(vs ...uint64) {
	for _, v := range vs {
		w.b = binary.AppendUvarint(w.b, v)
	}
}

// Varint writes each of vs as a zig-zagged signed varint.
func (w *Writer) Varint(vs ...int64) {
	for _, v := range vs {
		w.b = binary.AppendVarint(w.b, v)
	}
}

// Bool writes each of vs as one byte, 1 or 0.
func (w *Writer) Bool(vs ...bool) {
	for _, v := range vs {
		if v {
			w.b = append(w.b, 1)
		} else {
			w.b = append(w.b, 0)
		}
	}
}

// Str writes each of ss as a uvarint length and the bytes: fields one
// after the other, with no count before them (a list is StringList).
func (w *Writer) Str(ss ...string) {
	for _, s := range ss {
		w.b = binary.AppendUvarint(w.b, uint64(len(s)))
		w.b = append(w.b, s...)
	}
}

// Blob writes a uvarint length and p.
func (w *Writer) Blob(p []byte) {
	w.b = binary.AppendUvarint(w.b, uint64(len(p)))
	w.b = append(w.b, p...)
}

// StringList writes a list: a uvarint count, then each string.
func (w *Writer) StringList(ss []string) {
	w.Uvarint(uint64(len(ss)))
	w.Str(ss...)
}

// BeginFrame starts a frame: it writes room for the header, which EndFrame
// fills in with the length of what was written since.
func (w *Writer) BeginFrame() {
	w.open = len(w.b) + 1
	w.b = append(w.b, 0, 0, 0, 0)
}

// EndFrame fills in the header of the frame BeginFrame started and returns
// the bytes written. It panics without an open frame (a programming error).
func (w *Writer) EndFrame() []byte {
	if w.open == 0 {
		panic("wirecodec: EndFrame without BeginFrame")
	}
	at := w.open - 1
	binary.LittleEndian.PutUint32(w.b[at:], uint32(len(w.b)-at-FrameHeader))
	w.open = 0
	return w.b
}
