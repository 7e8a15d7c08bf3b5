package initplan

import (
	"strconv"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// The wire format is deliberately plain (see package wirecodec): a version
// byte, then each field in declaration order. Decoding checks every length
// against what is left, so a hostile or truncated message is an error,
// never a panic or a huge allocation.

const (
	planVersion   = 1
	statusVersion = 2
	// MaxPlanSize bounds a plan on the wire (argv and env dominate).
	MaxPlanSize = 64 << 20
	// FrameHeader is the size of the length before a framed plan.
	FrameHeader = wirecodec.FrameHeader
)

// ErrMalformed is wrapped by every decoding error.
var ErrMalformed = wirecodec.ErrMalformed

// EncodePlan returns p framed for the control pipe: a 4-byte little-endian
// length, then the encoded plan.
func EncodePlan(p *Plan) []byte {
	w := wirecodec.NewWriter(make([]byte, 0, 512))
	w.BeginFrame()
	w.Byte(planVersion)
	w.String(p.Rootfs)
	w.Bool(p.ReadonlyRoot)
	w.Uvarint(uint64(len(p.Mounts)))
	for _, m := range p.Mounts {
		w.Uvarint(uint64(m.Kind))
		w.String(m.Source)
		w.String(m.Dest)
		w.String(m.FSType)
		w.Uvarint(m.Flags)
		w.Uvarint(m.Attrs)
		w.String(m.Data)
	}
	w.String(p.Hostname)
	w.Bool(p.LoopbackUp)
	w.Bool(p.CgroupNS)
	w.Uvarint(uint64(len(p.Rlimits)))
	for _, r := range p.Rlimits {
		w.Uvarint(uint64(r.Resource))
		w.Uvarint(r.Cur)
		w.Uvarint(r.Max)
	}
	w.Uvarint(uint64(p.Umask))
	w.Strings(p.Args)
	w.Strings(p.Env)
	w.String(p.Cwd)
	w.Uvarint(uint64(p.UID))
	w.Uvarint(uint64(p.GID))
	w.Uvarint(uint64(len(p.Groups)))
	for _, g := range p.Groups {
		w.Uvarint(uint64(g))
	}
	w.Uvarint(p.Bounding)
	w.Uvarint(p.Inheritable)
	w.Uvarint(p.Ambient)
	w.Uvarint(uint64(p.LastCap))
	w.Blob(p.Seccomp)
	return w.EndFrame()
}

// FrameSize returns the payload length announced by a frame header, or an
// error if it is beyond MaxPlanSize.
func FrameSize(header [FrameHeader]byte) (int, error) {
	return wirecodec.FrameSize(header, MaxPlanSize, "init plan")
}

// version reads the version byte and checks it is want.
func version(r *wirecodec.Reader, want byte) {
	if v := r.Byte(); v != want && r.Err() == nil {
		r.Fail(versionError{v, want})
	}
}

type versionError struct{ got, want byte }

func (e versionError) Error() string {
	return "version " + strconv.Itoa(int(e.got)) + ", this code reads " + strconv.Itoa(int(e.want))
}

// DecodePlan decodes a plan's payload (without its frame header).
func DecodePlan(b []byte) (*Plan, error) {
	r := wirecodec.NewReader(b, "init plan")
	version(r, planVersion)
	p := &Plan{}
	p.Rootfs = r.String()
	p.ReadonlyRoot = r.Bool()
	if n := r.Count(7); n > 0 {
		p.Mounts = make([]Mount, n)
		for i := range p.Mounts {
			decodeMount(r, &p.Mounts[i])
		}
	}
	p.Hostname = r.String()
	p.LoopbackUp = r.Bool()
	p.CgroupNS = r.Bool()
	if n := r.Count(3); n > 0 {
		p.Rlimits = make([]Rlimit, n)
		for i := range p.Rlimits {
			p.Rlimits[i] = Rlimit{Resource: r.Uint32(), Cur: r.Uvarint(), Max: r.Uvarint()}
		}
	}
	p.Umask = r.Uint32()
	p.Args = r.Strings()
	p.Env = r.Strings()
	p.Cwd = r.String()
	p.UID = r.Uint32()
	p.GID = r.Uint32()
	if n := r.Count(1); n > 0 {
		p.Groups = make([]uint32, n)
		for i := range p.Groups {
			p.Groups[i] = r.Uint32()
		}
	}
	p.Bounding = r.Uvarint()
	p.Inheritable = r.Uvarint()
	p.Ambient = r.Uvarint()
	p.LastCap = r.Uint32()
	p.Seccomp = r.Blob()
	if err := r.End(); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeMount(r *wirecodec.Reader, m *Mount) {
	kind := r.Uvarint()
	if r.Err() == nil && (kind < uint64(MountBind) || kind > uint64(MountSymlink)) {
		r.Fail(unknownMountKind(kind))
	}
	m.Kind = MountKind(kind)
	m.Source = r.String()
	m.Dest = r.String()
	m.FSType = r.String()
	m.Flags = r.Uvarint()
	m.Attrs = r.Uvarint()
	m.Data = r.String()
}

type unknownMountKind uint64

func (k unknownMountKind) Error() string {
	return "unknown mount kind " + strconv.FormatUint(uint64(k), 10)
}

// EncodeStatus encodes s (unframed: the init writes it and closes the
// pipe).
func EncodeStatus(s *Status) []byte {
	w := wirecodec.NewWriter(make([]byte, 0, 64+len(s.Error)))
	w.Byte(statusVersion)
	w.String(s.Error)
	w.Bool(s.NotStarted)
	w.Bool(s.MissingSource)
	w.Varint(int64(s.ExitCode))
	w.Varint(int64(s.Signal))
	for _, v := range []int64{s.UserNanos, s.SystemNanos, s.MaxRSSKiB, s.MinorFaults,
		s.MajorFaults, s.VoluntarySwitches, s.InvoluntarySwitches} {
		w.Varint(v)
	}
	return w.Bytes()
}

// DecodeStatus decodes what EncodeStatus encoded.
func DecodeStatus(b []byte) (*Status, error) {
	r := wirecodec.NewReader(b, "init status")
	version(r, statusVersion)
	s := &Status{}
	s.Error = r.String()
	s.NotStarted = r.Bool()
	s.MissingSource = r.Bool()
	s.ExitCode = r.Int32()
	s.Signal = r.Int32()
	for _, v := range []*int64{&s.UserNanos, &s.SystemNanos, &s.MaxRSSKiB, &s.MinorFaults,
		&s.MajorFaults, &s.VoluntarySwitches, &s.InvoluntarySwitches} {
		*v = r.Varint()
	}
	if err := r.End(); err != nil {
		return nil, err
	}
	return s, nil
}
