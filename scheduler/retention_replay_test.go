package scheduler

import (
	"strings"
	"testing"
	"time"

	"cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/storage"
)

// throughJournal returns records as a replay reads them: each encoded and
// decoded, as the journal stores it.
func throughJournal(t *testing.T, records []record) []record {
	t.Helper()
	out := make([]record, 0, len(records))
	for _, r := range records {
		b, err := encodeRecord(r)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeRecord(b)
		if err != nil {
			t.Fatalf("decode record %+v: %v", r, err)
		}
		out = append(out, back)
	}
	return out
}

// The tester's case: under a 40 s completed_retention, Y completes, X 20 s
// later, Y expires, then X is forgotten by a delete record (a client's
// DeleteOperation, or the max_completed_bytes bound that writes one by
// itself), and Z completes. Replayed under a shorter retention, expiring
// by time forgot X too early and the delete record failed the start
// ("refusing to start from a wrong state"); under a longer one, Y was
// kept though the live scheduler had forgotten it. Replay now gives the
// live state whatever the retention.
func TestReplayUnderAnotherRetentionGivesTheLiveState(t *testing.T) {
	for _, deleteBy := range []string{"DeleteOperation", "max_completed_bytes"} {
		h := newHarness(t, func(cfg *Config) {
			cfg.CompletedRetention = 40 * time.Second
			if deleteBy == "max_completed_bytes" {
				cfg.MaxCompletedBytes = 1000 // Z's response alone takes more
			}
		})
		h.connect("w", 1, nil)
		h.execute("Y", "y", "", 0)
		h.result("w", "Y", 1, 0)
		h.advance(20 * time.Second)
		h.execute("X", "x", "", 0)
		h.result("w", "X", 1, 0)
		h.advance(20 * time.Second)
		if _, ok := h.c.ops["Y"]; ok {
			t.Fatalf("%s: Y is retained 40 s after it completed", deleteBy)
		}
		big := &repb.ExecuteResponse{CachedResult: true, Message: strings.Repeat("z", 2000)}
		if deleteBy == "DeleteOperation" {
			if err := h.c.Delete(h.now, "X"); err != nil {
				t.Fatal(err)
			}
			big.Message = "small"
		}
		h.c.AddCompleted(h.now, "Z", "", "", actionDigest("z"), big)
		h.collect()
		if _, ok := h.c.ops["X"]; ok {
			t.Fatalf("%s: X is still retained; the test means it deleted", deleteBy)
		}
		want := mustState(t, h.c)
		if len(want.Completed) != 1 || want.Completed[0] != "Z" {
			t.Fatalf("%s: the live core retains %v, want [Z]", deleteBy, want.Completed)
		}
		for _, retention := range []time.Duration{5 * time.Second, 40 * time.Second, time.Hour} {
			cfg := h.cfg
			cfg.CompletedRetention = retention
			if got := mustState(t, replayed(t, cfg, nil, nil, throughJournal(t, h.records))); !equalStates(got, want) {
				t.Fatalf("%s: replayed under a %s retention, retained %v, want %v", deleteBy, retention, got.Completed, want.Completed)
			}
		}
	}
}

// Replaying a journal gives the live state under any config, not only
// the one that wrote it: a restart with another completed_retention,
// max_completed_bytes, max_retries, leases, timeouts or limits replays
// what the live core decided (they apply to what comes after). The random
// scenario of TestReplayRebuildsTheSameState runs with a bound on
// completed responses low enough that it deletes operations often, and is
// replayed, from the start and from a snapshot, under other settings.
func TestReplayUnderAnotherConfigGivesTheLiveState(t *testing.T) {
	others := []func(*Config){
		func(c *Config) { c.CompletedRetention = time.Second },
		func(c *Config) { c.CompletedRetention = time.Hour },
		func(c *Config) { c.MaxCompletedBytes = 1 },
		func(c *Config) { c.MaxCompletedBytes = 1 << 30; c.CompletedRetention = 2 * time.Second },
		func(c *Config) {
			c.MaxRetries, c.LeaseDuration, c.ReconnectGrace, c.TimeoutGrace = 0, time.Second, time.Second, time.Hour
			c.MaxQueuedPerInstance, c.NoWorkerTimeout = 1, time.Second
		},
	}
	expiries, deletes := 0, 0
	for seed := uint64(1); seed <= 10; seed++ {
		cfg := scenarioConfig()
		cfg.MaxCompletedBytes = 40 // a few responses
		sc := newScenario(t, seed, 11, cfg)
		var snap *coreState
		snapAt := 0
		for i := 0; i < 600; i++ {
			sc.step()
			if i == 300 {
				b, err := encodeState(mustState(t, sc.c))
				if err != nil {
					t.Fatal(err)
				}
				if snap, err = decodeState(b); err != nil {
					t.Fatal(err)
				}
				snapAt = len(sc.records)
			}
		}
		for _, r := range sc.records {
			switch r.kind {
			case recExpire:
				expiries++
			case recDelete: // mostly for max_completed_bytes, some the scenario's own
				deletes++
			}
		}
		want := mustState(t, sc.c)
		for i, mod := range others {
			other := cfg
			mod(&other)
			if got := mustState(t, replayed(t, other, nil, nil, sc.records)); !equalStates(got, want) {
				t.Fatalf("seed %d, config %d: replaying %d records gave another state:\n got %+v\nwant %+v", seed, i, len(sc.records), got, want)
			}
			if got := mustState(t, replayed(t, other, nil, snap, sc.records[snapAt:])); !equalStates(got, want) {
				t.Fatalf("seed %d, config %d: snapshot + %d records gave another state:\n got %+v\nwant %+v", seed, i, len(sc.records)-snapAt, got, want)
			}
		}
	}
	if expiries == 0 || deletes == 0 {
		t.Fatalf("the scenarios wrote %d expiries and %d deletes; they should write both", expiries, deletes)
	}
	t.Logf("%d expiry and %d delete records replayed under other configs", expiries, deletes)
}

// A journal written before expiries named what they forgot (version 3)
// still replays: under the retention now in force, and where that is
// shorter than the one it was written under, the delete of an operation
// it forgot sooner than the live scheduler did is taken as done (the
// operation is gone either way), rather than refusing to start.
func TestOldExpiryRecordsReplayUnderAShorterRetention(t *testing.T) {
	h := newHarness(t, func(cfg *Config) { cfg.CompletedRetention = 40 * time.Second })
	h.c.AddCompleted(h.now, "Y", "", "", actionDigest("y"), &repb.ExecuteResponse{CachedResult: true})
	h.collect()
	h.advance(20 * time.Second)
	h.c.AddCompleted(h.now, "X", "", "", actionDigest("x"), &repb.ExecuteResponse{CachedResult: true})
	h.collect()
	h.advance(20 * time.Second)
	if err := h.c.Delete(h.now, "X"); err != nil {
		t.Fatal(err)
	}
	h.collect()
	records := throughJournal(t, h.records)
	old := 0
	for i, r := range records {
		if r.kind == recExpire { // as version 3 wrote and read it
			records[i] = record{kind: recExpire, at: r.at, expiredByTime: true}
			old++
		}
	}
	if old == 0 {
		t.Fatal("no expiry was written; the test tests nothing")
	}
	want := mustState(t, h.c)
	for _, retention := range []time.Duration{5 * time.Second, 40 * time.Second} {
		cfg := h.cfg
		cfg.CompletedRetention = retention
		c := replayed(t, cfg, nil, nil, records)
		c.recovered(h.now)
		if got := mustState(t, c); !equalStates(got, want) {
			t.Fatalf("under a %s retention: %+v, want %+v", retention, got, want)
		}
		if c.forgotByTime != nil {
			t.Fatalf("under a %s retention: the names old expiries forgot are kept after the replay", retention)
		}
	}
}

// The tester's reproduction on a journal on disk: a scheduler with a
// 40 s completed_retention records Y's and, 20 s later, X's completion,
// Y's expiry and a DeleteOperation of X; restarted with a 5 s retention
// it started no more ("record 8: ... not found; refusing to start from a
// wrong state"). It starts now, with a shorter retention and a longer one,
// and neither X nor Y is known.
func TestRestartWithAnotherRetentionStarts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.JournalDir = t.TempDir()
	cfg.TickInterval = time.Hour
	cfg.CompletedRetention = 40 * time.Second
	start := func(cfg Config) (*Scheduler, *fakeClock, error) {
		clock := newFakeClock()
		s, err := New(Options{Config: cfg, Clock: clock, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache()})
		return s, clock, err
	}
	s, clock, err := start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hit := func(name string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.core.AddCompleted(s.clock.Now(), name, "", "", actionDigest(name), &repb.ExecuteResponse{CachedResult: true})
		s.apply()
	}
	hit("operations/Y")
	clock.Advance(20 * time.Second)
	hit("operations/X")
	clock.Advance(21 * time.Second)
	s.Tick()
	ops := &operationsService{s: s}
	if _, err := ops.DeleteOperation(t.Context(), &longrunningpb.DeleteOperationRequest{Name: "operations/X"}); err != nil {
		t.Fatalf("DeleteOperation(X): %v", err)
	}
	s.Close()
	for _, retention := range []time.Duration{5 * time.Second, time.Hour} {
		cfg.CompletedRetention = retention
		r, _, err := start(cfg)
		if err != nil {
			t.Fatalf("restart with a %s retention: %v", retention, err)
		}
		r.mu.Lock()
		_, x := r.core.ops["operations/X"]
		_, y := r.core.ops["operations/Y"]
		r.mu.Unlock()
		r.Close()
		if x || y {
			t.Fatalf("restart with a %s retention knows X (%v) and Y (%v); the scheduler had forgotten both", retention, x, y)
		}
	}
}
