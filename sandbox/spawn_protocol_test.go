package sandbox

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// fill sets every field reachable from v to a distinct non-zero value:
// pointers allocated, two items in each list and map. A field the
// protocol forgets to carry then fails a round trip, whatever its type,
// including fields a newer runtime-spec adds.
func fill(v reflect.Value, n *int) {
	*n++
	switch v.Kind() {
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(uint64(*n))
	case reflect.String:
		v.SetString("s" + strconv.Itoa(*n))
	case reflect.Pointer:
		v.Set(reflect.New(v.Type().Elem()))
		fill(v.Elem(), n)
	case reflect.Slice:
		v.Set(reflect.MakeSlice(v.Type(), 2, 2))
		for i := 0; i < 2; i++ {
			fill(v.Index(i), n)
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		for i := 0; i < 2; i++ {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, n)
			fill(e, n)
			v.SetMapIndex(k, e)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	default:
		panic("fill: no value for " + v.Type().String())
	}
}

func filled[T any]() T {
	var v T
	n := 0
	fill(reflect.ValueOf(&v).Elem(), &n)
	return v
}

func fullRequest() spawnRequest {
	req := filled[spawnRequest]()
	req.Op = opRun
	return req
}

func TestSpawnRequestRoundTrip(t *testing.T) {
	empty := spawnRequest{Op: opRun, ID: 1, Resources: &specs.LinuxResources{Memory: &specs.LinuxMemory{}}}
	for _, req := range []spawnRequest{fullRequest(), empty, {Op: opCancel, ID: 2}, {Op: opKill, ID: 1 << 60}} {
		frame := encodeSpawnRequest(&req)
		payload, err := readSpawnFrame(bytes.NewReader(frame), nil, "spawn request")
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeSpawnRequest(payload)
		if err != nil {
			t.Fatalf("%v: %v", req.Op, err)
		}
		if !reflect.DeepEqual(got, req) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, req)
		}
	}
}

func TestSpawnResponseRoundTrip(t *testing.T) {
	full := filled[spawnResponse]()
	full.Kind = kindMountSource
	for _, resp := range []spawnResponse{full, {ID: 3, Error: "sandbox setup failed: x", Kind: kindSetup},
		{ID: 4, Result: &Result{ExitCode: -1, Signal: 9}}} {
		payload, err := readSpawnFrame(bytes.NewReader(encodeSpawnResponse(&resp)), nil, "spawn response")
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeSpawnResponse(payload)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, resp) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, resp)
		}
	}
}

// Every cut of a message, and one with a byte more, is refused as
// malformed, never a panic; a run that does not decode still gives its
// ID, so that the spawner can answer it.
func TestBadSpawnMessages(t *testing.T) {
	req := fullRequest()
	reqb := encodeSpawnRequest(&req)[wirecodec.FrameHeader:]
	full := filled[spawnResponse]()
	respb := encodeSpawnResponse(&full)[wirecodec.FrameHeader:]
	opAndID := 1 + len(binary.AppendUvarint(nil, req.ID))
	for i := 0; i < len(reqb); i++ {
		got, err := decodeSpawnRequest(reqb[:i])
		if !errors.Is(err, wirecodec.ErrMalformed) {
			t.Fatalf("request cut at %d/%d: %v", i, len(reqb), err)
		}
		if i >= opAndID && (got.Op != opRun || got.ID != req.ID) {
			t.Fatalf("request cut at %d: op %v id %d, want the run's", i, got.Op, got.ID)
		}
	}
	if _, err := decodeSpawnRequest(append(bytes.Clone(reqb), 0)); !errors.Is(err, wirecodec.ErrMalformed) {
		t.Fatalf("request with a trailing byte: %v", err)
	}
	for i := 0; i < len(respb); i++ {
		if _, err := decodeSpawnResponse(respb[:i]); !errors.Is(err, wirecodec.ErrMalformed) {
			t.Fatalf("response cut at %d/%d: %v", i, len(respb), err)
		}
	}
	_, err := decodeSpawnRequest([]byte{9, 1})
	if !errors.Is(err, wirecodec.ErrMalformed) || !strings.Contains(err.Error(), "unknown operation 9") {
		t.Fatalf("unknown operation: %v", err)
	}
}

// A spawner whose reply cannot be read is killed, and the Run waiting
// for it fails with ErrSpawnerGone instead of hanging: here a process
// that writes a frame header announcing 4 GiB and then sleeps.
func TestUnreadableReplyEndsTheSpawner(t *testing.T) {
	c, err := connectSpawner(exec.Command("/bin/sh", "-c", `printf '\377\377\377\377'; exec sleep 600`))
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan spawnResponse, 1)
	sent := c.send(spawnRequest{Op: opRun, ID: 7}, ch)
	if sent != nil && !errors.Is(sent, ErrSpawnerGone) {
		t.Fatal(sent)
	}
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		t.Fatal("the connection still waits for a spawner that sent an unreadable reply")
	}
	if !errors.Is(c.err, ErrSpawnerGone) || !strings.Contains(c.err.Error(), "frame length 4294967295") {
		t.Fatalf("connection error %v, want ErrSpawnerGone naming the bad frame", c.err)
	}
	if sent == nil {
		if resp := <-ch; resp.ID != 7 || resp.Kind != kindSpawnerGone {
			t.Fatalf("pending reply %+v, want kindSpawnerGone", resp)
		}
	}
}

// The spawner answers a run it cannot decode with a setup error and goes
// on; a frame cut short ends it cleanly, as a closed pipe does.
func TestSpawnerSurvivesAnUndecodableRun(t *testing.T) {
	requireRoot(t)
	c, err := startSpawner(Options{CgroupParent: testCgroupParent}.withDefaults())
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan spawnResponse, 1)
	c.mu.Lock()
	c.pending[5] = ch
	c.mu.Unlock()
	w := wirecodec.NewWriter(nil)
	w.BeginFrame()
	w.Byte(byte(opRun))
	w.Uvarint(5)
	w.Uvarint(1 << 40) // a plan longer than the frame
	if _, err := c.in.Write(w.EndFrame()); err != nil {
		t.Fatal(err)
	}
	resp := <-ch
	if resp.Kind != kindSetup || !errors.Is(kindError(resp.Kind, resp.Errno, resp.Error), ErrSetup) || !strings.Contains(resp.Error, "malformed spawn request") {
		t.Fatalf("reply %+v, want a setup error naming the malformed request", resp)
	}
	if _, err := c.in.Write([]byte{10, 0, 0, 0, byte(opCancel)}); err != nil {
		t.Fatal(err)
	}
	c.in.Close()
	select {
	case <-c.done:
	case <-time.After(time.Minute):
		t.Fatal("the spawner did not exit after a cut frame and a closed stdin")
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("spawner exit code %d, want 0 (a clean end)", code)
	}
}

// A request too large for the spawner's pipe is the Run's setup error,
// and the connection stays usable.
func TestOversizedRequestIsASetupError(t *testing.T) {
	c, err := connectSpawner(exec.Command("/bin/sh", "-c", "exec cat >/dev/null"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { c.in.Close(); <-c.done }()
	err = c.send(spawnRequest{Op: opRun, ID: 1, Plan: make([]byte, maxSpawnFrame)}, make(chan spawnResponse, 1))
	if !errors.Is(err, ErrSetup) || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("oversized request: %v, want a setup error", err)
	}
	if err := c.send(spawnRequest{Op: opCancel, ID: 1}, nil); err != nil || c.dead() {
		t.Fatalf("after an oversized request: %v, dead %v", err, c.dead())
	}
}
