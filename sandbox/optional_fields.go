package sandbox

import (
	"errors"
	"math"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// Optional (pointer) fields on the spawner's wire: each a presence byte,
// then the value if present. The helpers take several fields of one type,
// so that a struct's fields are listed in a few lines.

// writeOpts writes each of vs with write.
func writeOpts[T any](w *wirecodec.Writer, write func(...T), vs ...*T) {
	for _, v := range vs {
		w.Bool(v != nil)
		if v != nil {
			write(*v)
		}
	}
}

// readOpts reads what writeOpts wrote into each of ps, with read.
func readOpts[T any](r *wirecodec.Reader, read func() T, ps ...**T) {
	for _, p := range ps {
		*p = nil
		if r.Bool() {
			v := read()
			*p = &v
		}
	}
}

// writeUint16, writeUint32 and readUint16 adapt the Writer's and
// Reader's uvarints to the narrower fields of runtime-spec's types (the
// Reader has Uint32).
func writeUint16(w *wirecodec.Writer) func(...uint16) {
	return func(vs ...uint16) {
		for _, v := range vs {
			w.Uvarint(uint64(v))
		}
	}
}

func writeUint32(w *wirecodec.Writer) func(...uint32) {
	return func(vs ...uint32) {
		for _, v := range vs {
			w.Uvarint(uint64(v))
		}
	}
}

func readUint16(r *wirecodec.Reader) func() uint16 {
	return func() uint16 {
		v := r.Uint32()
		if v > math.MaxUint16 {
			r.Fail(errors.New("integer overflows 16 bits"))
			return 0
		}
		return uint16(v)
	}
}
