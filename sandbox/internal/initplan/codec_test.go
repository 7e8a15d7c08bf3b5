package initplan

import (
	"errors"
	"reflect"
	"testing"
)

func samplePlan() *Plan {
	return &Plan{
		Rootfs:       "/var/lib/paddock/images/abc/rootfs",
		ReadonlyRoot: true,
		Mounts: []Mount{
			{Kind: MountFS, Source: "proc", Dest: "/proc", FSType: "proc", Flags: 0xe},
			{Kind: MountBind, Source: "/work/in", Dest: "/work", Attrs: 0x2},
			{Kind: MountSymlink, Source: "/proc/self/fd", Dest: "/dev/fd"},
			{Kind: MountMask, Dest: "/proc/kcore"},
			{Kind: MountReadonly, Dest: "/proc/sys"},
			{Kind: MountFS, Source: "tmpfs", Dest: "/tmp", FSType: "tmpfs", Data: "mode=1777,size=65536k"},
		},
		Hostname:    "sandbox",
		LoopbackUp:  true,
		CgroupNS:    true,
		Rlimits:     []Rlimit{{Resource: 7, Cur: 1024, Max: 1 << 63}},
		Umask:       0o022,
		Args:        []string{"/bin/sh", "-c", "echo ünïcode; exit 3"},
		Env:         []string{"PATH=/bin", "EMPTY="},
		Cwd:         "/work",
		UID:         1000,
		GID:         4294967295,
		Groups:      []uint32{0, 5, 1 << 31},
		Bounding:    1<<41 - 1,
		Inheritable: 1 << 10,
		Ambient:     1 << 10,
		LastCap:     40,
		Seccomp:     []byte{0x20, 0, 0, 0, 4, 0, 0, 0},
	}
}

func TestPlanRoundTrip(t *testing.T) {
	for _, p := range []*Plan{samplePlan(), {Rootfs: "/", Args: []string{"true"}, Cwd: "/"}} {
		frame := EncodePlan(p)
		n, err := FrameSize([FrameHeader]byte(frame[:FrameHeader]))
		if err != nil || n != len(frame)-FrameHeader {
			t.Fatalf("frame size %d, %v; want %d", n, err, len(frame)-FrameHeader)
		}
		got, err := DecodePlan(frame[FrameHeader:])
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, p)
		}
	}
}

func TestStatusRoundTrip(t *testing.T) {
	for _, s := range []*Status{
		{ExitCode: -1, Signal: 9, UserNanos: 12345678, SystemNanos: 1, MaxRSSKiB: 2048, MinorFaults: 99,
			MajorFaults: 1, VoluntarySwitches: 3, InvoluntarySwitches: 4},
		{Error: "rootfs: mount /proc: operation not permitted", NotStarted: true},
		{Error: "rootfs: open mount source /x: no such file or directory", MissingSource: true},
		{ExitCode: 255},
	} {
		got, err := DecodeStatus(EncodeStatus(s))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, s) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, s)
		}
	}
}

// TestTruncatedAndTrailing: every prefix of a valid message, and the
// message with a byte appended, is refused as malformed.
func TestTruncatedAndTrailing(t *testing.T) {
	plan := EncodePlan(samplePlan())[FrameHeader:]
	status := EncodeStatus(&Status{Error: "x", ExitCode: 1})
	for i := 0; i < len(plan); i++ {
		if _, err := DecodePlan(plan[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("plan cut at %d/%d: %v, want ErrMalformed", i, len(plan), err)
		}
	}
	for i := 0; i < len(status); i++ {
		if _, err := DecodeStatus(status[:i]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("status cut at %d/%d: %v, want ErrMalformed", i, len(status), err)
		}
	}
	if _, err := DecodePlan(append(plan, 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing byte: %v", err)
	}
}

func TestBadValues(t *testing.T) {
	for name, b := range map[string][]byte{
		"version":    {2},
		"huge count": {planVersion, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bool":       {planVersion, 0, 2},
		"mount kind": {planVersion, 0, 0, 1, 9, 0, 0, 0, 0, 0, 0},
	} {
		if _, err := DecodePlan(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	for _, n := range []uint32{0, MaxPlanSize + 1} {
		var h [FrameHeader]byte
		h[0], h[1], h[2], h[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
		if _, err := FrameSize(h); !errors.Is(err, ErrMalformed) {
			t.Errorf("frame size %d: %v", n, err)
		}
	}
}

func FuzzDecodePlan(f *testing.F) {
	f.Add(EncodePlan(samplePlan())[FrameHeader:])
	f.Add([]byte{planVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodePlan(b)
		if err != nil {
			return
		}
		// Whatever decodes survives a round trip unchanged.
		again, err := DecodePlan(EncodePlan(p)[FrameHeader:])
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("round trip of %x: %+v, %v", b, again, err)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	f.Add(EncodeStatus(&Status{Error: "e", ExitCode: -1, Signal: 15}))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeStatus(b)
		if err != nil {
			return
		}
		if _, err := DecodeStatus(EncodeStatus(s)); err != nil {
			t.Fatal(err)
		}
	})
}
