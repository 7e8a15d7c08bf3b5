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
	w.Str(p.Rootfs)
	w.Bool(p.ReadonlyRoot)
	w.Uvarint(uint64(len(p.Mounts)))
	for _, m := range p.Mounts {
		w.Uvarint(uint64(m.Kind))
		w.Str(m.Source, m.Dest, m.FSType)
		w.Uvarint(m.Flags, m.Attrs)
		w.Str(m.Data)
	}
	w.Str(p.Hostname)
	w.Bool(p.LoopbackUp, p.CgroupNS)
	w.Uvarint(uint64(len(p.Rlimits)))
	for _, r := range p.Rlimits {
		w.Uvarint(uint64(r.Resource), r.Cur, r.Max)
	}
	w.Uvarint(uint64(p.Umask))
	w.StringList(p.Args)
	w.StringList(p.Env)
	w.Str(p.Cwd)
	w.Uvarint(uint64(p.UID), uint64(p.GID), uint64(len(p.Groups)))
	for _, g := range p.Groups {
		w.Uvarint(uint64(g))
	}
	w.Uvarint(p.Bounding, p.Inheritable, p.Ambient, uint64(p.LastCap))
	w.Blob(p.Seccomp)
	return w.EndFrame()
}

// FrameSize returns the payload length announced by a frame header, or an
// error if it is beyond MaxPlanSize. Like DecodePlan, it is the Go
// reference of what the init (initprog's read_plan) checks.
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
	p.Rootfs, p.ReadonlyRoot = r.Str(), r.Bool()
	p.Mounts = wirecodec.ReadList(r, 7, func() Mount { return decodeMount(r) })
	p.Hostname, p.LoopbackUp, p.CgroupNS = r.Str(), r.Bool(), r.Bool()
	p.Rlimits = wirecodec.ReadList(r, 3, func() Rlimit {
		return Rlimit{Resource: r.Uint32(), Cur: r.Uvarint(), Max: r.Uvarint()}
	})
	p.Umask, p.Args, p.Env, p.Cwd = r.Uint32(), r.StringList(), r.StringList(), r.Str()
	p.UID, p.GID, p.Groups = r.Uint32(), r.Uint32(), wirecodec.ReadList(r, 1, r.Uint32)
	p.Bounding, p.Inheritable, p.Ambient, p.LastCap = r.Uvarint(), r.Uvarint(), r.Uvarint(), r.Uint32()
	p.Seccomp = r.Blob()
	if err := r.End(); err != nil {
		return nil, err
	}
	return p, nil
}

func decodeMount(r *wirecodec.Reader) Mount {
	kind := r.Uvarint()
	if r.Err() == nil && (kind < uint64(MountBind) || kind > uint64(MountSymlink)) {
		r.Fail(unknownMountKind(kind))
	}
	return Mount{Kind: MountKind(kind), Source: r.Str(), Dest: r.Str(), FSType: r.Str(), Flags: r.Uvarint(),
		Attrs: r.Uvarint(), Data: r.Str()}
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
	w.Str(s.Error)
	w.Bool(s.NotStarted, s.MissingSource)
	w.Varint(int64(s.ExitCode), int64(s.Signal), s.UserNanos, s.SystemNanos, s.MaxRSSKiB, s.MinorFaults,
		s.MajorFaults, s.VoluntarySwitches, s.InvoluntarySwitches)
	return w.Bytes()
}

// DecodeStatus decodes what EncodeStatus encoded.
func DecodeStatus(b []byte) (*Status, error) {
	r := wirecodec.NewReader(b, "init status")
	version(r, statusVersion)
	s := &Status{Error: r.Str(), NotStarted: r.Bool(), MissingSource: r.Bool(), ExitCode: r.Int32(), Signal: r.Int32()}
	for _, v := range []*int64{&s.UserNanos, &s.SystemNanos, &s.MaxRSSKiB, &s.MinorFaults,
		&s.MajorFaults, &s.VoluntarySwitches, &s.InvoluntarySwitches} {
		*v = r.Varint()
	}
	if err := r.End(); err != nil {
		return nil, err
	}
	return s, nil
}
