package scheduler

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// A record on disk is a version byte, then its fields in a fixed order as
// varints and length-prefixed bytes (the journal frames and checksums it).
// Hand-written rather than a generic encoding because a record is written
// for every dispatch and result, and 100,000 are read at start-up.
const recordVersion = 1

// encodeRecord serialises r.
func encodeRecord(r record) ([]byte, error) { return appendRecord(nil, r) }

// appendRecord appends r, serialised, to buf.
func appendRecord(buf []byte, r record) ([]byte, error) {
	w := &recWriter{b: buf}
	w.uvarint(recordVersion)
	w.uvarint(uint64(r.kind))
	w.varint(r.at.UnixNano())
	w.str(r.name)
	w.str(r.instance)
	w.str(r.owner)
	w.digest(r.action)
	w.str(r.worker)
	w.str(r.reason)
	w.uvarint(uint64(r.retries))
	var resp []byte
	if r.resp != nil {
		var err error
		if resp, err = proto.Marshal(r.resp); err != nil {
			return nil, fmt.Errorf("encode response of %s: %w", r.name, err)
		}
	}
	w.bytes(resp)
	if r.kind == recExecute {
		s := r.sub
		if s == nil {
			return nil, fmt.Errorf("execute record of %s without its submission", r.name)
		}
		w.str(s.name)
		w.str(s.instance)
		w.str(s.owner)
		w.digest(s.action)
		w.bool(s.cacheable)
		w.varint(int64(s.priority))
		w.str(s.invocation)
		w.str(s.queueKey)
		w.props(s.routing)
		w.digest(s.spec.command)
		w.digest(s.spec.inputRoot)
		w.props(s.spec.platform)
		w.varint(int64(s.spec.timeout))
		w.bool(s.spec.doNotCache)
		w.bytes(s.spec.requestMetadata)
	}
	return w.b, nil
}

// decodeRecord parses what encodeRecord wrote.
func decodeRecord(b []byte) (record, error) {
	rd := &recReader{b: b}
	var r record
	if v := rd.uvarint(); v != recordVersion && rd.err == nil {
		return r, fmt.Errorf("record version %d, this scheduler reads %d", v, recordVersion)
	}
	r.kind = recordKind(rd.uvarint())
	r.at = time.Unix(0, rd.varint())
	r.name = rd.str()
	r.instance = rd.str()
	r.owner = rd.str()
	r.action = rd.digest()
	r.worker = rd.str()
	r.reason = rd.str()
	r.retries = int(rd.uvarint())
	if resp := rd.bytes(); resp != nil {
		r.resp = &repb.ExecuteResponse{}
		if err := proto.Unmarshal(resp, r.resp); err != nil && rd.err == nil {
			rd.err = fmt.Errorf("response: %w", err)
		}
	}
	if r.kind == recExecute {
		s := &submission{}
		r.sub = s
		s.name = rd.str()
		s.instance = rd.str()
		s.owner = rd.str()
		s.action = rd.digest()
		s.cacheable = rd.bool()
		s.priority = int32(rd.varint())
		s.invocation = rd.str()
		s.queueKey = rd.str()
		s.routing = rd.props()
		s.spec.command = rd.digest()
		s.spec.inputRoot = rd.digest()
		s.spec.platform = rd.props()
		s.spec.timeout = time.Duration(rd.varint())
		s.spec.doNotCache = rd.bool()
		s.spec.requestMetadata = rd.bytes()
	}
	if rd.err == nil && len(rd.b) != 0 {
		rd.err = fmt.Errorf("%d unexpected byte(s) at the end", len(rd.b))
	}
	if rd.err != nil {
		return r, fmt.Errorf("decode record: %w", rd.err)
	}
	return r, nil
}

type recWriter struct{ b []byte }

func (w *recWriter) uvarint(v uint64) { w.b = binary.AppendUvarint(w.b, v) }
func (w *recWriter) varint(v int64)   { w.b = binary.AppendVarint(w.b, v) }
func (w *recWriter) str(s string)     { w.uvarint(uint64(len(s))); w.b = append(w.b, s...) }
func (w *recWriter) bytes(p []byte)   { w.uvarint(uint64(len(p))); w.b = append(w.b, p...) }

func (w *recWriter) bool(v bool) {
	if v {
		w.b = append(w.b, 1)
	} else {
		w.b = append(w.b, 0)
	}
}

// digest writes a zero digest as function 0.
func (w *recWriter) digest(d digest.Digest) {
	if d.IsZero() {
		w.uvarint(0)
		return
	}
	w.uvarint(uint64(d.Function()))
	w.str(d.Hash())
	w.varint(d.SizeBytes())
}

func (w *recWriter) props(ps []*workerpb.Property) {
	w.uvarint(uint64(len(ps)))
	for _, p := range ps {
		w.str(p.Name)
		w.str(p.Value)
	}
}

// recReader reads fields; after the first error every read returns a zero
// value and err keeps that error.
type recReader struct {
	b   []byte
	err error
}

var errShort = errors.New("record ends early")

func (r *recReader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *recReader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.err = errShort
		return 0
	}
	r.b = r.b[n:]
	return v
}

// bytes returns a copy, or nil for an empty field.
func (r *recReader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil || n == 0 {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = errShort
		return nil
	}
	p := append([]byte(nil), r.b[:n]...)
	r.b = r.b[n:]
	return p
}

func (r *recReader) str() string {
	n := r.uvarint()
	if r.err != nil || n == 0 {
		return ""
	}
	if uint64(len(r.b)) < n {
		r.err = errShort
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *recReader) bool() bool {
	if r.err != nil {
		return false
	}
	if len(r.b) == 0 {
		r.err = errShort
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *recReader) digest() digest.Digest {
	fn := r.uvarint()
	if fn == 0 || r.err != nil {
		return digest.Digest{}
	}
	hash, size := r.str(), r.varint()
	if r.err != nil {
		return digest.Digest{}
	}
	d, err := digest.New(digest.Function(fn), hash, size)
	if err != nil {
		r.err = err
	}
	return d
}

func (r *recReader) props() []*workerpb.Property {
	n := r.uvarint()
	if r.err != nil || n == 0 {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errShort
		return nil
	}
	ps := make([]*workerpb.Property, n)
	for i := range ps {
		ps[i] = &workerpb.Property{Name: r.str(), Value: r.str()}
	}
	return ps
}
