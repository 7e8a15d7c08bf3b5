package initplan

import (
	"encoding/binary"
	"errors"
	"strconv"
)

// The wire format is deliberately plain: a version byte, then each field in
// declaration order, integers as uvarints (signed ones zig-zagged), strings
// and byte slices as a uvarint length and the bytes, lists as a uvarint
// count and the items. Decoding checks every length against what is left,
// so a hostile or truncated message is an error, never a panic or a huge
// allocation.

const (
	planVersion   = 1
	statusVersion = 2
	// MaxPlanSize bounds a plan on the wire (argv and env dominate).
	MaxPlanSize = 64 << 20
	// FrameHeader is the size of the length before a framed plan.
	FrameHeader = 4
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = errors.New("malformed init message")

type encoder struct{ b []byte }

func (e *encoder) uint(v uint64)   { e.b = binary.AppendUvarint(e.b, v) }
func (e *encoder) int(v int64)     { e.b = binary.AppendVarint(e.b, v) }
func (e *encoder) bytes(v []byte)  { e.uint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) string(v string) { e.uint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *encoder) strings(v []string) {
	e.uint(uint64(len(v)))
	for _, s := range v {
		e.string(s)
	}
}
func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = errors.Join(ErrMalformed, errors.New(what))
	}
}

func (d *decoder) uint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) int() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad integer")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) u32() uint32 {
	v := d.uint()
	if v > 1<<32-1 {
		d.fail("integer overflows 32 bits")
		return 0
	}
	return uint32(v)
}

func (d *decoder) i32() int32 {
	v := d.int()
	if v < -1<<31 || v > 1<<31-1 {
		d.fail("integer overflows 32 bits")
		return 0
	}
	return int32(v)
}

// count reads a length or count that needs at least min bytes per item.
func (d *decoder) count(min int) int {
	n := d.uint()
	if d.err == nil && n > uint64(len(d.b)/min) {
		d.fail("length " + strconv.FormatUint(n, 10) + " beyond the message")
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil || n == 0 {
		return nil
	}
	v := append([]byte(nil), d.b[:n]...)
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string {
	n := d.count(1)
	if d.err != nil {
		return ""
	}
	v := string(d.b[:n])
	d.b = d.b[n:]
	return v
}

func (d *decoder) strings() []string {
	n := d.count(1)
	if d.err != nil || n == 0 {
		return nil
	}
	v := make([]string, n)
	for i := range v {
		v[i] = d.string()
	}
	return v
}

func (d *decoder) bool() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 || d.b[0] > 1 {
		d.fail("bad boolean")
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

func (d *decoder) version(want byte) {
	if len(d.b) == 0 || d.b[0] != want {
		d.fail("unknown version")
		return
	}
	d.b = d.b[1:]
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(strconv.Itoa(len(d.b)) + " trailing bytes")
	}
	return d.err
}

// EncodePlan returns p framed for the control pipe: a 4-byte little-endian
// length, then the encoded plan.
func EncodePlan(p *Plan) []byte {
	e := &encoder{b: make([]byte, FrameHeader, 512)}
	e.b = append(e.b, planVersion)
	e.string(p.Rootfs)
	e.bool(p.ReadonlyRoot)
	e.uint(uint64(len(p.Mounts)))
	for _, m := range p.Mounts {
		e.uint(uint64(m.Kind))
		e.string(m.Source)
		e.string(m.Dest)
		e.string(m.FSType)
		e.uint(m.Flags)
		e.uint(m.Attrs)
		e.string(m.Data)
	}
	e.string(p.Hostname)
	e.bool(p.LoopbackUp)
	e.bool(p.CgroupNS)
	e.uint(uint64(len(p.Rlimits)))
	for _, r := range p.Rlimits {
		e.uint(uint64(r.Resource))
		e.uint(r.Cur)
		e.uint(r.Max)
	}
	e.uint(uint64(p.Umask))
	e.strings(p.Args)
	e.strings(p.Env)
	e.string(p.Cwd)
	e.uint(uint64(p.UID))
	e.uint(uint64(p.GID))
	e.uint(uint64(len(p.Groups)))
	for _, g := range p.Groups {
		e.uint(uint64(g))
	}
	e.uint(p.Bounding)
	e.uint(p.Inheritable)
	e.uint(p.Ambient)
	e.uint(uint64(p.LastCap))
	e.bytes(p.Seccomp)
	binary.LittleEndian.PutUint32(e.b, uint32(len(e.b)-FrameHeader))
	return e.b
}

// FrameSize returns the payload length announced by a frame header, or an
// error if it is beyond MaxPlanSize.
func FrameSize(header [FrameHeader]byte) (int, error) {
	n := binary.LittleEndian.Uint32(header[:])
	if n == 0 || n > MaxPlanSize {
		return 0, errors.Join(ErrMalformed, errors.New("plan size "+strconv.FormatUint(uint64(n), 10)+" out of range"))
	}
	return int(n), nil
}

// DecodePlan decodes a plan's payload (without its frame header).
func DecodePlan(b []byte) (*Plan, error) {
	d := &decoder{b: b}
	d.version(planVersion)
	p := &Plan{}
	p.Rootfs = d.string()
	p.ReadonlyRoot = d.bool()
	if n := d.count(7); n > 0 {
		p.Mounts = make([]Mount, n)
		for i := range p.Mounts {
			m := &p.Mounts[i]
			kind := d.uint()
			if d.err == nil && (kind < uint64(MountBind) || kind > uint64(MountSymlink)) {
				d.fail("unknown mount kind " + strconv.FormatUint(kind, 10))
			}
			m.Kind = MountKind(kind)
			m.Source = d.string()
			m.Dest = d.string()
			m.FSType = d.string()
			m.Flags = d.uint()
			m.Attrs = d.uint()
			m.Data = d.string()
		}
	}
	p.Hostname = d.string()
	p.LoopbackUp = d.bool()
	p.CgroupNS = d.bool()
	if n := d.count(3); n > 0 {
		p.Rlimits = make([]Rlimit, n)
		for i := range p.Rlimits {
			p.Rlimits[i] = Rlimit{Resource: d.u32(), Cur: d.uint(), Max: d.uint()}
		}
	}
	p.Umask = d.u32()
	p.Args = d.strings()
	p.Env = d.strings()
	p.Cwd = d.string()
	p.UID = d.u32()
	p.GID = d.u32()
	if n := d.count(1); n > 0 {
		p.Groups = make([]uint32, n)
		for i := range p.Groups {
			p.Groups[i] = d.u32()
		}
	}
	p.Bounding = d.uint()
	p.Inheritable = d.uint()
	p.Ambient = d.uint()
	p.LastCap = d.u32()
	p.Seccomp = d.bytes()
	if err := d.end(); err != nil {
		return nil, err
	}
	return p, nil
}

// EncodeStatus encodes s (unframed: the init writes it and closes the
// pipe).
func EncodeStatus(s *Status) []byte {
	e := &encoder{b: make([]byte, 0, 64+len(s.Error))}
	e.b = append(e.b, statusVersion)
	e.string(s.Error)
	e.bool(s.NotStarted)
	e.bool(s.MissingSource)
	e.int(int64(s.ExitCode))
	e.int(int64(s.Signal))
	for _, v := range []int64{s.UserNanos, s.SystemNanos, s.MaxRSSKiB, s.MinorFaults,
		s.MajorFaults, s.VoluntarySwitches, s.InvoluntarySwitches} {
		e.int(v)
	}
	return e.b
}

// DecodeStatus decodes what EncodeStatus encoded.
func DecodeStatus(b []byte) (*Status, error) {
	d := &decoder{b: b}
	d.version(statusVersion)
	s := &Status{}
	s.Error = d.string()
	s.NotStarted = d.bool()
	s.MissingSource = d.bool()
	s.ExitCode = d.i32()
	s.Signal = d.i32()
	for _, v := range []*int64{&s.UserNanos, &s.SystemNanos, &s.MaxRSSKiB, &s.MinorFaults,
		&s.MajorFaults, &s.VoluntarySwitches, &s.InvoluntarySwitches} {
		*v = d.int()
	}
	if err := d.end(); err != nil {
		return nil, err
	}
	return s, nil
}
