package scheduler

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// With a journal, a restart keeps the running action (its worker
// reconnects and finishes it, without running it again), the queued ones
// (dispatched afterwards in their order) and the completed one, and every
// operation name from before answers WaitExecution.
func TestSchedulerRestartWithJournalKeepsOperations(t *testing.T) {
	cfg := testConfig()
	cfg.JournalDir = t.TempDir()
	first := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	g := newGate()
	w := startTestWorker(t, first.addr, "w", 1, g.run("w"))

	start := func(f *farm, salt string) string {
		t.Helper()
		return f.startExecute(ctx, t, f.action(t, salt, nil))
	}
	running := start(first, "running")
	w.waitFor(t, "the action", func() bool { return w.c.Holding(running) })
	queued := []string{start(first, "queued-1"), start(first, "queued-2"), start(first, "queued-3")}
	hit := first.action(t, "cached", nil)
	if err := first.ac.Put(ctx, "", hit, &repb.ActionResult{ExitCode: 7}); err != nil {
		t.Fatal(err)
	}
	cached, err := must(first.exec.Execute(ctx, executeRequest(hit))).Recv()
	if err != nil || !cached.Done {
		t.Fatalf("cache hit: %v, %v", cached, err)
	}

	first.stop()
	second := startFarm(t, cfg, first.addr, first.cas, first.ac)
	w.waitFor(t, "the reconnect", func() bool { return w.connects >= 2 })
	// The cache hit is still answerable.
	ops, err := collect(must(second.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: cached.Name})))
	if err != nil || responseOf(t, ops[len(ops)-1]).Result.GetExitCode() != 7 {
		t.Fatalf("WaitExecution of the cache hit after restart: %v, %v", ops, err)
	}
	// Every other operation finishes, seen through its original name.
	close(g.release)
	for _, name := range append([]string{running}, queued...) {
		ops, err := collect(must(second.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})))
		if err != nil {
			t.Fatalf("WaitExecution(%s) after restart: %v", name, err)
		}
		if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExitCode() != 3 {
			t.Fatalf("%s: response %v, want the worker's result", name, resp)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.cancelled) != 0 {
		t.Fatalf("the worker was told to cancel %v; the restarted scheduler should have kept its action", w.cancelled)
	}
	var order []string
	for _, a := range w.assigned {
		order = append(order, a.OperationName)
		if a.Attempt != 1 {
			t.Fatalf("%s ran as attempt %d: nothing should have run twice", a.OperationName, a.Attempt)
		}
	}
	want := append([]string{running}, queued...)
	if len(order) != len(want) {
		t.Fatalf("assigned %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("assigned %v, want %v (queue order kept)", order, want)
		}
	}
}

// startExecute calls Execute for d, takes its first operation and leaves
// the call open until the test ends (or ctx is done); it returns the
// operation's name.
func (f *farm) startExecute(ctx context.Context, t *testing.T, d digest.Digest) string {
	t.Helper()
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	op, err := must(f.exec.Execute(sctx, executeRequest(d))).Recv()
	if err != nil {
		t.Fatal(err)
	}
	return op.Name
}

// A worker that does not come back within reconnect_grace after a restart
// has its action requeued (counting a retry) to another worker.
func TestRestartRequeuesActionsOfWorkersThatDoNotReturn(t *testing.T) {
	cfg := testConfig()
	cfg.JournalDir = t.TempDir()
	first := startFarm(t, cfg, "", nil, nil)
	ctx := ctxTimeout(t)
	gone, stopGone := runTestWorker(first.addr, "gone", 1, blockRun)
	d := first.action(t, "orphan", nil)
	name := first.startExecute(ctx, t, d)
	gone.waitFor(t, "the action", func() bool { return len(gone.assigned) == 1 })
	first.stop()
	// Stopping the worker now cannot give the action back: its scheduler
	// is gone.
	stopGone()
	second := startFarm(t, cfg, first.addr, first.cas, first.ac)
	other := startTestWorker(t, second.addr, "other", 1, okRun("other"))
	ops, err := collect(must(second.exec.WaitExecution(ctx, &repb.WaitExecutionRequest{Name: name})))
	if err != nil {
		t.Fatal(err)
	}
	if resp := responseOf(t, ops[len(ops)-1]); resp.Result.GetExecutionMetadata().GetWorker() != "other" {
		t.Fatalf("response %v, want the result from the other worker", resp)
	}
	if a := other.firstAssigned(t); a.OperationName != name || a.Attempt != 2 {
		t.Fatalf("other got %s attempt %d, want %s attempt 2", a.OperationName, a.Attempt, name)
	}
}

// A journal whose tail was torn (cut at a random byte) or damaged (one bit
// flipped in its last record) recovers every operation whose record is
// complete, in order, and says in the log what it dropped. (A record
// damaged with intact ones after it refuses the start: journal's
// TestFlippedBitIsDetected.)
func TestDamagedJournalTailKeepsCompleteRecords(t *testing.T) {
	for _, damage := range []string{"truncate", "flip"} {
		t.Run(damage, func(t *testing.T) {
			dir := t.TempDir()
			cfg := DefaultConfig()
			cfg.JournalDir = dir
			s := newTestScheduler(t, cfg, nil)
			const n = 50
			for i := 0; i < n; i++ {
				submitBench(t, s, i)
			}
			s.Close()
			seg := filepath.Join(dir, fmt.Sprintf("log-%020d", 1))
			b, err := os.ReadFile(seg)
			if err != nil {
				t.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
			pos := 8 + rng.IntN(len(b)-8) // past the segment header
			if damage == "truncate" {
				// Inside a record, never at the end of one: a journal cut
				// between two records is whole as far as it goes, and
				// drops nothing to say. A frame is a 4-byte length, a
				// 4-byte checksum and the payload (package journal).
				for off := 8; off+8 <= len(b); off += 8 + int(binary.LittleEndian.Uint32(b[off:])) {
					if off == pos {
						pos++
						break
					}
				}
				b = b[:pos]
			} else {
				pos = len(b) - 1 - rng.IntN(8) // in the last record's payload
				b[pos] ^= 1 << rng.IntN(8)
			}
			if err := os.WriteFile(seg, b, 0o600); err != nil {
				t.Fatal(err)
			}
			logs := &bytes.Buffer{}
			r := newTestScheduler(t, cfg, logs)
			defer r.Close()
			r.mu.Lock()
			defer r.mu.Unlock()
			kept := len(r.core.ops)
			for i := 0; i < n; i++ {
				_, ok := r.core.ops[benchSubmission(i).name]
				if ok != (i < kept) {
					t.Fatalf("damage at byte %d: operation %d recovered %v, but %d were kept: not a prefix", pos, i, ok, kept)
				}
			}
			if kept == n && damage == "flip" || !strings.Contains(logs.String(), "dropped") && kept < n {
				t.Fatalf("damage at byte %d: kept %d of %d, log:\n%s", pos, kept, n, logs)
			}
			t.Logf("damage at byte %d of %d: kept %d of %d operations", pos, len(b), kept, n)
		})
	}
}

// A journal that cannot be trusted beyond its tail (here: a snapshot whose
// checksum fails) stops the scheduler from starting, with the reason.
func TestCorruptJournalRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.JournalDir = dir
	s := newTestScheduler(t, cfg, nil)
	s.mu.Lock()
	if _, err := s.core.Execute(s.clock.Now(), benchSubmission(1)); err != nil {
		s.mu.Unlock()
		t.Fatal(err)
	}
	s.apply()
	s.startSnapshot()
	s.mu.Unlock()
	s.Close()
	snaps, _ := filepath.Glob(filepath.Join(dir, "snap-*"))
	if len(snaps) != 1 {
		t.Fatalf("snapshots %v", snaps)
	}
	b, _ := os.ReadFile(snaps[0])
	b[len(b)-1] ^= 0x10
	if err := os.WriteFile(snaps[0], b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache()})
	if err == nil || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("New on a corrupt snapshot: %v, want a refusal", err)
	}
}

func TestBadJournalConfigIsRefused(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JournalDir, cfg.JournalSync = t.TempDir(), "sometimes"
	_, err := New(Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache()})
	if err == nil || !strings.Contains(err.Error(), "journal_sync") {
		t.Fatalf("journal_sync: sometimes: %v, want an error naming it", err)
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.JournalDir, cfg.JournalSync = file, "fsync"
	if _, err := New(Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache()}); err == nil {
		t.Fatal("a journal_dir that is a file was accepted")
	}
}

func newTestScheduler(t *testing.T, cfg Config, logs io.Writer) *Scheduler {
	t.Helper()
	if logs == nil {
		logs = io.Discard
	}
	cfg.TickInterval = time.Hour
	s, err := New(Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache(),
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An operation recovered from the journal whose client never comes back
// (no WaitExecution) is abandoned after abandoned_grace from the restart,
// as one whose stream broke.
func TestRecoveredOperationWithoutClientIsAbandoned(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JournalDir = t.TempDir()
	cfg.TickInterval = time.Hour
	first := newTestScheduler(t, cfg, nil)
	executeDirect(t, first, benchSubmission(1))
	first.Close()

	clock := newFakeClock()
	s, err := New(Options{Config: cfg, Clock: clock, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	name := benchSubmission(1).name
	op := func() (opView, bool) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.core.Operation(name)
	}
	clock.Advance(cfg.AbandonedGrace - time.Second)
	s.Tick()
	if v, ok := op(); !ok || v.done {
		t.Fatalf("operation %+v (found %v) before abandoned_grace, want it queued", v, ok)
	}
	clock.Advance(2 * time.Second)
	s.Tick()
	v, ok := op()
	if !ok || !v.done || !strings.Contains(v.response.GetStatus().GetMessage(), "abandoned") {
		t.Fatalf("operation %+v after abandoned_grace, want it cancelled as abandoned", v)
	}
}

// Records carry whole responses, so snapshots come by bytes as well as by
// count: repeated cache hits of a large result cannot grow the journal
// without bound (it would fill its disk, and new work would be refused for
// everyone). A snapshot holds the retained responses, which
// max_completed_bytes bounds. Here 300 records of about 10 KB, against
// 256 KB between snapshots and 100 KB of retained responses, leave the
// journal well under a megabyte, and a restart recovers the state.
func TestLargeRecordsBringSnapshotsSooner(t *testing.T) {
	defer func(b int64) { snapshotBytes = b }(snapshotBytes)
	snapshotBytes = 256 << 10
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.JournalDir, cfg.MaxCompletedBytes = dir, 100<<10
	s := newTestScheduler(t, cfg, nil)
	resp := &repb.ExecuteResponse{CachedResult: true, Message: strings.Repeat("r", 10_000)}
	// A snapshot started is written in the background; records written
	// meanwhile wait for the next. Waiting for each keeps the count exact.
	snapped := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.dur.snapping
	}
	for i := range 300 {
		s.mu.Lock()
		s.core.AddCompleted(s.clock.Now(), fmt.Sprint("operations/hit-", i), "", "", actionDigest("x"), resp)
		s.apply()
		s.mu.Unlock()
		for deadline := time.Now().Add(10 * time.Second); !snapped(); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("a snapshot took more than 10 s")
			}
		}
	}
	s.Close()
	var total int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil {
			total += info.Size()
		}
	}
	if total > 512<<10 {
		t.Fatalf("the journal takes %d bytes after 3 MB of records; want a snapshot (about 100 KB) and at most 256 KB of records after it", total)
	}
	r := newTestScheduler(t, cfg, nil)
	defer r.Close()
	if _, ok := r.core.ops["operations/hit-299"]; !ok {
		t.Fatal("the last operation was not recovered")
	}
}

// TestSnapshotBytesCountAcrossRestarts: the records a start replays count
// toward the next snapshot. Counted from zero at each start, a scheduler
// restarted before each 256 MiB of new records (a crash loop, routine
// deploys) never wrote one, and its journal and start-up grew without
// bound. Here 200 KB before a restart and 100 KB after pass the 256 KB.
func TestSnapshotBytesCountAcrossRestarts(t *testing.T) {
	defer func(b int64) { snapshotBytes = b }(snapshotBytes)
	snapshotBytes = 256 << 10
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.JournalDir = dir
	resp := &repb.ExecuteResponse{CachedResult: true, Message: strings.Repeat("r", 10_000)}
	add := func(s *Scheduler, from, to int) {
		for i := from; i < to; i++ {
			s.mu.Lock()
			s.core.AddCompleted(s.clock.Now(), fmt.Sprint("operations/hit-", i), "", "", actionDigest("x"), resp)
			s.apply()
			s.mu.Unlock()
		}
	}
	snapshots := func() []string {
		names, _ := filepath.Glob(filepath.Join(dir, "snap-*"))
		return names
	}
	s := newTestScheduler(t, cfg, nil)
	add(s, 0, 20)
	s.Close()
	if n := snapshots(); len(n) != 0 {
		t.Fatalf("snapshots %v after 200 KB of records, want none yet", n)
	}
	r := newTestScheduler(t, cfg, nil)
	add(r, 20, 30)
	for deadline := time.Now().Add(10 * time.Second); len(snapshots()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no snapshot after 300 KB of records since the last, 100 KB of them in this run")
		}
	}
	r.Close()
}

// executeDirect submits sub to s's core under its lock, as Execute does
// once a request has passed its checks, and applies what that decides.
func executeDirect(t *testing.T, s *Scheduler, sub submission) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.core.Execute(s.clock.Now(), sub); err != nil {
		t.Fatal(err)
	}
	s.apply()
}
