package sandbox

import (
	"errors"
	"math"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// Optional (pointer) fields on the spawner's wire: a presence byte, then
// the value if present.

func writeOptInt(w *wirecodec.Writer, v *int64) {
	w.Bool(v != nil)
	if v != nil {
		w.Varint(*v)
	}
}

func writeOptUint(w *wirecodec.Writer, v *uint64) {
	w.Bool(v != nil)
	if v != nil {
		w.Uvarint(*v)
	}
}

func writeOptUint32(w *wirecodec.Writer, v *uint32) {
	w.Bool(v != nil)
	if v != nil {
		w.Uvarint(uint64(*v))
	}
}

func writeOptUint16(w *wirecodec.Writer, v *uint16) {
	w.Bool(v != nil)
	if v != nil {
		w.Uvarint(uint64(*v))
	}
}

func writeOptBool(w *wirecodec.Writer, v *bool) {
	w.Bool(v != nil)
	if v != nil {
		w.Bool(*v)
	}
}

func readOptInt(r *wirecodec.Reader) *int64 {
	if !r.Bool() {
		return nil
	}
	v := r.Varint()
	return &v
}

func readOptUint(r *wirecodec.Reader) *uint64 {
	if !r.Bool() {
		return nil
	}
	v := r.Uvarint()
	return &v
}

func readOptUint32(r *wirecodec.Reader) *uint32 {
	if !r.Bool() {
		return nil
	}
	v := r.Uint32()
	return &v
}

func readOptUint16(r *wirecodec.Reader) *uint16 {
	if !r.Bool() {
		return nil
	}
	v := r.Uint32()
	if v > math.MaxUint16 {
		r.Fail(errors.New("integer overflows 16 bits"))
		return nil
	}
	v16 := uint16(v)
	return &v16
}

func readOptBool(r *wirecodec.Reader) *bool {
	if !r.Bool() {
		return nil
	}
	v := r.Bool()
	return &v
}
