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

// Len is the number of bytes written.
func (w *Writer) Len() int { return len(w.b) }

// Byte writes one raw byte (a version or a tag).
func (w *Writer) Byte(v byte) { w.b = append(w.b, v) }

// Uvarint writes an unsigned varint.
func (w *Writer) Uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }

// Varint writes a zig-zagged signed varint.
func (w *Writer) Varint(v int64) { w.b = binary.AppendVarint(w.b, v) }

// Bool writes one byte, 1 or 0.
func (w *Writer) Bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

// String writes a uvarint length and s.
func (w *Writer) String(s string) { w.Uvarint(uint64(len(s))); w.b = append(w.b, s...) }

// Blob writes a uvarint length and p.
func (w *Writer) Blob(p []byte) { w.Uvarint(uint64(len(p))); w.b = append(w.b, p...) }

// Strings writes a uvarint count and each string.
func (w *Writer) Strings(ss []string) {
	w.Uvarint(uint64(len(ss)))
	for _, s := range ss {
		w.String(s)
	}
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
