package sandbox

import (
	"errors"
	"io"
	"strconv"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/internal/wirecodec"
	"github.com/paddock-build/paddock/sandbox/internal/initplan"
)

// The spawner's protocol: the launcher writes spawnRequests to the
// spawner's stdin, the spawner answers spawnResponses on its stdout, each
// message in a wirecodec frame (a 4-byte length, then the fields in a
// fixed order). Both ends are the same binary, so the format needs no
// version. A frame cut short or announcing more than maxSpawnFrame is a
// broken stream. The spawner then stops, as when its stdin closes; it
// answers a whole request that does not decode with a setup error and
// reads on (runSpawner). The launcher kills a spawner whose reply it
// cannot read, and its Runs in flight fail (spawnerConn.readLoop).

// maxSpawnFrame bounds a message on the spawner's pipes: the init's plan
// (at most initplan.MaxPlanSize) and what goes with it.
const maxSpawnFrame = initplan.MaxPlanSize + 1<<20

// spawnOp is the operation of a spawnRequest.
type spawnOp uint8

const (
	opRun    spawnOp = iota + 1 // run Bundle; answered when it has ended
	opCancel                    // terminate the run with the same ID; no answer
	opKill                      // kill the run with the same ID at once; no answer
)

func (op spawnOp) String() string {
	switch op {
	case opRun:
		return "run"
	case opCancel:
		return "cancel"
	case opKill:
		return "kill"
	}
	return "operation " + strconv.Itoa(int(op))
}

type spawnRequest struct {
	Op spawnOp
	ID uint64
	// The fields below are sent with opRun only.

	// Plan is the init's plan, framed (initplan.EncodePlan); the launcher
	// made it from the bundle.
	Plan         []byte
	Clone        cloneParams
	Resources    *specs.LinuxResources
	Stdout       string
	Stderr       string
	OutputLimit  int64
	Timeout      time.Duration
	KillGrace    time.Duration
	CgroupParent string
	// Transient: start no warm init for Clone after this run
	// (Request.Transient).
	Transient bool
}

type spawnResponse struct {
	ID     uint64
	Result *Result
	Error  string
	// Kind names the sentinel Error wraps.
	Kind errorKind
	// Errno is the errno Error wraps (errnoOf), or 0.
	Errno syscall.Errno
}

// encodeSpawnRequest returns req as a frame.
func encodeSpawnRequest(req *spawnRequest) []byte {
	w := wirecodec.NewWriter(make([]byte, 0, 256+len(req.Plan)))
	w.BeginFrame()
	w.Byte(byte(req.Op))
	w.Uvarint(req.ID)
	if req.Op == opRun {
		w.Blob(req.Plan)
		w.Uvarint(uint64(req.Clone.Flags))
		writeIDMappings(w, req.Clone.UIDs)
		writeIDMappings(w, req.Clone.GIDs)
		writeResources(w, req.Resources)
		w.Str(req.Stdout, req.Stderr)
		w.Varint(req.OutputLimit, int64(req.Timeout), int64(req.KillGrace))
		w.Str(req.CgroupParent)
		w.Bool(req.Transient)
	}
	return w.EndFrame()
}

// decodeSpawnRequest decodes a frame's message. On an error, the returned
// request still carries the operation and ID if they were read, so that
// the spawner can answer a run it cannot decode.
func decodeSpawnRequest(b []byte) (spawnRequest, error) {
	r := wirecodec.NewReader(b, "spawn request")
	var req spawnRequest
	req.Op = spawnOp(r.Byte())
	req.ID = r.Uvarint()
	if r.Err() != nil {
		return spawnRequest{}, r.Err()
	}
	switch req.Op {
	case opCancel, opKill:
	case opRun:
		req.Plan = r.Blob()
		req.Clone.Flags = uintptr(r.Uvarint())
		req.Clone.UIDs = readIDMappings(r)
		req.Clone.GIDs = readIDMappings(r)
		req.Resources = readResources(r)
		req.Stdout = r.Str()
		req.Stderr = r.Str()
		req.OutputLimit = r.Varint()
		req.Timeout = time.Duration(r.Varint())
		req.KillGrace = time.Duration(r.Varint())
		req.CgroupParent = r.Str()
		req.Transient = r.Bool()
	default:
		r.Fail(errors.New("unknown " + req.Op.String()))
	}
	return req, r.End()
}

func writeIDMappings(w *wirecodec.Writer, ms []specs.LinuxIDMapping) {
	w.Uvarint(uint64(len(ms)))
	for _, m := range ms {
		w.Uvarint(uint64(m.ContainerID), uint64(m.HostID), uint64(m.Size))
	}
}

func readIDMappings(r *wirecodec.Reader) []specs.LinuxIDMapping {
	return wirecodec.ReadList(r, 3, func() specs.LinuxIDMapping {
		return specs.LinuxIDMapping{ContainerID: r.Uint32(), HostID: r.Uint32(), Size: r.Uint32()}
	})
}

// encodeSpawnResponse returns resp as a frame.
func encodeSpawnResponse(resp *spawnResponse) []byte {
	w := wirecodec.NewWriter(make([]byte, 0, 128+len(resp.Error)))
	w.BeginFrame()
	w.Uvarint(resp.ID)
	w.Byte(byte(resp.Kind))
	w.Uvarint(uint64(resp.Errno))
	w.Str(resp.Error)
	w.Bool(resp.Result != nil)
	if res := resp.Result; res != nil {
		u, c := &res.Usage, &res.Cgroup
		w.Varint(int64(res.ExitCode), int64(res.Signal))
		w.Bool(res.OOMKilled, res.TimedOut, res.Canceled, res.Killed, res.InitDied)
		w.Varint(int64(u.UserTime), int64(u.SystemTime), u.MaxRSSBytes, u.MinorFaults,
			u.MajorFaults, u.VoluntaryCtxSwitches, u.InvoluntaryCtxSwitch)
		w.Uvarint(c.MemoryPeakBytes)
		w.Varint(int64(c.CPUTime))
		w.Uvarint(c.PidsPeak, c.PidsLimitHits, c.OOMKills)
		for _, o := range []*OutputStats{&res.Stdout, &res.Stderr} {
			w.Varint(o.Bytes)
			w.Bool(o.Truncated)
			w.Varint(o.Discarded)
		}
		w.Varint(int64(res.WallTime))
	}
	return w.EndFrame()
}

// decodeSpawnResponse decodes a frame's message.
func decodeSpawnResponse(b []byte) (spawnResponse, error) {
	r := wirecodec.NewReader(b, "spawn response")
	var resp spawnResponse
	resp.ID = r.Uvarint()
	resp.Kind = errorKind(r.Byte())
	resp.Errno = syscall.Errno(r.Uvarint())
	resp.Error = r.Str()
	if r.Bool() {
		res := &Result{}
		resp.Result = res
		res.ExitCode = int(r.Varint())
		res.Signal = syscall.Signal(r.Varint())
		for _, b := range []*bool{&res.OOMKilled, &res.TimedOut, &res.Canceled, &res.Killed, &res.InitDied} {
			*b = r.Bool()
		}
		u := &res.Usage
		for _, v := range []*int64{(*int64)(&u.UserTime), (*int64)(&u.SystemTime), &u.MaxRSSBytes, &u.MinorFaults,
			&u.MajorFaults, &u.VoluntaryCtxSwitches, &u.InvoluntaryCtxSwitch} {
			*v = r.Varint()
		}
		c := &res.Cgroup
		c.MemoryPeakBytes = r.Uvarint()
		c.CPUTime = time.Duration(r.Varint())
		c.PidsPeak = r.Uvarint()
		c.PidsLimitHits = r.Uvarint()
		c.OOMKills = r.Uvarint()
		for _, o := range []*OutputStats{&res.Stdout, &res.Stderr} {
			o.Bytes = r.Varint()
			o.Truncated = r.Bool()
			o.Discarded = r.Varint()
		}
		res.WallTime = time.Duration(r.Varint())
	}
	if err := r.End(); err != nil {
		return spawnResponse{}, err
	}
	return resp, nil
}

// readSpawnFrame reads one frame from a spawner pipe into buf (reused when
// it is large enough): io.EOF at a frame boundary, an error wrapping
// wirecodec.ErrMalformed for a cut or oversized frame.
func readSpawnFrame(r io.Reader, buf []byte, what string) ([]byte, error) {
	return wirecodec.ReadFrame(r, buf, maxSpawnFrame, what)
}
