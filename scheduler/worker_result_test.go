package scheduler

import (
	"context"
	"math"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/digest"
)

// A worker's result reaches clients as it is, so the scheduler holds it
// to the action cache's rules first: one with an output outside the
// working directory, an absolute symlink or a malformed digest is not
// delivered, nor is a response no worker sends (a status code gRPC does
// not define, OK with no result, an invalid timestamp); the action runs again (here, its retry is queued), and a
// good result from the next attempt completes it.
func TestAWorkersBadResultIsNotDelivered(t *testing.T) {
	good := digest.FromBytes(repb.DigestFunction_SHA256, []byte("out")).Proto()
	of := func(r *repb.ActionResult) *repb.ExecuteResponse { return &repb.ExecuteResponse{Result: r} }
	ok := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: good}}}
	for name, bad := range map[string]*repb.ExecuteResponse{
		"path escapes":     of(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "../../../../tmp/PWNED", Digest: good}}}),
		"absolute path":    of(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "/etc/passwd", Digest: good}}}),
		"absolute symlink": of(&repb.ActionResult{OutputSymlinks: []*repb.OutputSymlink{{Path: "link", Target: "/etc/shadow"}}}),
		"malformed digest": of(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: &repb.Digest{Hash: "not-hex", SizeBytes: -5}}}}),
		"too large":        of(&repb.ActionResult{StdoutRaw: make([]byte, 4<<20-1000)}), // fits a worker message, not an Operation a client can receive
		"no gRPC code":     {Status: &rpcstatus.Status{Code: 999}, Result: ok},
		"negative code":    {Status: &rpcstatus.Status{Code: -3}},
		"OK and nothing":   {},
		"bad timestamp": of(&repb.ActionResult{ExecutionMetadata: &repb.ExecutedActionMetadata{
			WorkerStartTimestamp: &timestamppb.Timestamp{Seconds: math.MaxInt64, Nanos: 2e9}}}),
	} {
		t.Run(name, func(t *testing.T) {
			s := newTestScheduler(t, testConfig(), nil)
			defer s.Close()
			sub := benchSubmission(1)
			sub.spec.workingDirKnown = true // as Execute has it
			s.mu.Lock()
			if _, err := s.core.Execute(s.clock.Now(), sub); err != nil {
				t.Fatal(err)
			}
			s.apply()
			s.mu.Unlock()
			op := sub.name
			sess, err := s.connectWorker(context.Background(), &workerpb.Register{WorkerId: "w", Concurrency: 1, Platform: []*workerpb.Property{linux}})
			if err != nil {
				t.Fatal(err)
			}
			defer sess.close()
			report := func(attempt int32, r *repb.ExecuteResponse) {
				t.Helper()
				b, _ := proto.Marshal(r)
				if err := sess.handle(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.Result{
					OperationName: op, Attempt: attempt, ExecuteResponse: b}}}); err != nil {
					t.Fatal(err)
				}
			}
			report(1, bad)
			s.mu.Lock()
			v, _ := s.core.Operation(op)
			s.mu.Unlock()
			if v.done {
				t.Fatalf("the bad result completed the operation (a response of %d bytes)", proto.Size(v.response))
			}
			report(2, of(ok))
			s.mu.Lock()
			v, _ = s.core.Operation(op)
			s.mu.Unlock()
			if !v.done || len(v.response.GetResult().GetOutputFiles()) != 1 || strings.Contains(v.response.String(), "PWNED") {
				t.Fatalf("after a good second attempt: done %v, %d output files", v.done, len(v.response.GetResult().GetOutputFiles()))
			}
		})
	}
}

// The working directory a worker's result is checked against survives a
// restart, through the journal's records and through a snapshot: after
// one, a result whose output leaves the input root from it is refused
// as before.
func TestTheWorkingDirectorySurvivesARestart(t *testing.T) {
	h := newHarness(t, nil)
	sub := submission{name: "op", action: actionDigest("deep"), cacheable: true,
		spec: actionSpec{workingDir: "a/b/c", workingDirKnown: true}}
	if _, err := h.c.Execute(h.now, sub); err != nil {
		t.Fatal(err)
	}
	h.collect()
	check := func(how string, c *core) {
		t.Helper()
		e := c.execs["op"]
		if e == nil || !e.spec.workingDirKnown || e.spec.workingDir != "a/b/c" {
			t.Fatalf("after %s: %+v, want the working directory a/b/c known", how, e)
		}
		bad := &repb.ExecuteResponse{Result: &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "../../../../x",
			Digest: digest.FromBytes(repb.DigestFunction_SHA256, []byte("x")).Proto()}}}}
		if checkWorkerResult("w", e, bad) == nil {
			t.Fatalf("after %s: an output leaving the input root from a/b/c passed", how)
		}
	}
	var records []record // through their encoding, as the journal has them
	for _, r := range h.records {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = decodeRecord(b); err != nil {
			t.Fatal(err)
		}
		records = append(records, r)
	}
	check("a replay of the records", replayed(t, h.cfg, nil, nil, records))
	enc, err := encodeState(mustState(t, h.c))
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeState(enc)
	if err != nil {
		t.Fatal(err)
	}
	check("a snapshot", replayed(t, h.cfg, nil, st, nil))
}
