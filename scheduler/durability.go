package scheduler

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/scheduler/journal"
)

// snapshotEvery is how many records are written between snapshots (at
// least; and at least twice the live operations): enough that snapshots
// are rare, few enough that replay at start-up stays short.
const snapshotEvery = 200_000

// snapshotBytes is how many bytes of records are written between snapshots
// at least (and at least twice the last snapshot's size), whatever their
// number: a record carries a whole ExecuteResponse, and a client repeating
// Execute on a cached action with a 1 MB result wrote a megabyte a call,
// which 200,000 records would have let fill the journal's disk (new work
// is then refused for everyone). A variable for tests.
var snapshotBytes int64 = 256 << 20

// durability is the Scheduler's journal and the effects waiting for it.
// Every record is appended before the effects that come with it are
// carried out, in order. What clients see (an operation's name, a change of
// its state, a drained worker) waits until the records behind it are
// durable (raft's Ready pattern), so a client never learns anything a
// restart could forget. Messages to workers do not wait, as a raft leader
// sends entries while it writes them: a restarted scheduler learns from the
// workers what they hold (see hold). Fields other than j are guarded by
// Scheduler.mu.
type durability struct {
	j        *journal.Journal
	held     []heldEffects // in order of seq
	last     uint64        // seq of the last record appended
	durable  uint64        // seq of the last record known durable
	advanced chan struct{} // closed (and replaced) when durable advances or failed is set
	failed   error
	// since and sinceBytes count records since the last snapshot, and
	// their bytes; lastSnapBytes is that snapshot's size; snapping is set
	// while one is being written.
	since         int
	sinceBytes    int64
	lastSnapBytes int64
	snapping      bool
	snaps         sync.WaitGroup // snapshot writers, waited for by close
	scratch       []byte         // encoding buffer, reused
}

// close waits for a snapshot being written and closes the journal, which
// flushes what is buffered. Called without s.mu.
func (d *durability) close() error {
	d.snaps.Wait()
	return d.j.Close()
}

// heldEffects are effects waiting for record seq to be durable.
type heldEffects struct {
	seq uint64
	fx  effects
}

// openJournal opens the journal in cfg.JournalDir and loads its state into
// s.core. Any record that cannot be read or replayed fails it: the
// scheduler never starts from a state that is silently wrong.
func (s *Scheduler) openJournal() error {
	policy, err := journal.ParseSyncPolicy(s.cfg.JournalSync)
	if err != nil {
		return fmt.Errorf("scheduler: journal_sync: %w", err)
	}
	start := time.Now()
	j, rec, err := journal.Open(journal.Options{Dir: s.cfg.JournalDir, Sync: policy, Logger: s.log, OnDurable: s.onDurable})
	if err != nil {
		return fmt.Errorf("scheduler: %w", err)
	}
	if err := s.replay(rec); err != nil {
		_ = j.Close() // the replay's error is the one to report
		return fmt.Errorf("scheduler: journal %s: %w; refusing to start from a wrong state", s.cfg.JournalDir, err)
	}
	// The records since the snapshot count toward the next one, by number
	// and by bytes: counted from zero at each start, 256 MiB of records
	// had to come within one run, and a scheduler restarted often (a
	// crash loop, routine deploys) never wrote a snapshot while its
	// journal, and its start-up, grew (529 MB, 19.5 s after eight).
	var replayed int64
	for _, r := range rec.Records {
		replayed += int64(len(r))
	}
	s.dur = &durability{j: j, last: j.LastSeq(), durable: j.LastSeq(), advanced: make(chan struct{}),
		since: len(rec.Records), sinceBytes: replayed, lastSnapBytes: int64(len(rec.Snapshot))}
	queued := 0
	for _, q := range s.core.queues {
		queued += q.size
	}
	running := len(s.core.execs) - queued
	s.log.Info("scheduler: recovered from journal", "dir", s.cfg.JournalDir, "operations", len(s.core.ops),
		"queued", queued, "running", running, "workers_awaited", len(s.core.workers),
		"snapshot_record", rec.SnapshotSeq, "records_replayed", len(rec.Records), "took", time.Since(start))
	if rec.Dropped != "" {
		s.log.Warn("scheduler: the journal's damaged tail was dropped; operations in it are forgotten", "dropped", rec.Dropped)
	}
	return nil
}

// replay loads a snapshot and replays the records after it into s.core.
func (s *Scheduler) replay(rec *journal.Recovered) error {
	var st *coreState
	if rec.Snapshot != nil {
		var err error
		if st, err = decodeState(rec.Snapshot); err != nil {
			return fmt.Errorf("snapshot %d: %w", rec.SnapshotSeq, err)
		}
	}
	if st != nil {
		// s.core is new and empty: size its maps for the snapshot's
		// state once. Not for the records after it too, as they were:
		// most records (dispatches, results, cancels, deletes,
		// expiries) add no operation, and a Go map never shrinks, so
		// a long journal left maps sized for operations that never
		// existed for as long as the scheduler ran. The records' own
		// operations grow the maps as they come.
		s.core.ops = make(map[string]*operation, len(st.Ops))
		s.core.execs = make(map[string]*execution, len(st.Execs))
		s.core.inflight = make(map[dedupKey]*execution, len(st.Execs))
		if err := s.core.restore(st); err != nil {
			return fmt.Errorf("snapshot %d: %w", rec.SnapshotSeq, err)
		}
	}
	s.core.replaying = true
	for i, b := range rec.Records {
		r, err := decodeRecord(b)
		if err == nil {
			err = s.core.replay(r)
		}
		if err != nil {
			return fmt.Errorf("record %d: %w", rec.SnapshotSeq+uint64(i)+1, err)
		}
		s.core.takeEffects()
	}
	s.core.replaying = false
	now := s.clock.Now()
	s.core.recovered(now)
	for _, op := range sortedValues(s.core.ops) {
		if !op.done {
			s.followers.idleFrom(op.name, now)
		}
	}
	return nil
}

// hold appends fx's records to the journal and carries fx out once they
// are durable, in order with every earlier effect. It returns the seq to
// wait for before telling a client about fx. Called with s.mu held.
func (s *Scheduler) hold(fx effects) uint64 {
	d := s.dur
	if d.failed != nil {
		// Nothing more can be recorded: what is in flight finishes as
		// without a journal, and new work is refused (checkJournal).
		s.core.fx.records = fx.records[:0]
		s.carryOut(fx)
		return d.last
	}
	for i, r := range fx.records {
		b, err := appendRecord(d.scratch[:0], r)
		if err != nil {
			// Only a response proto that cannot be marshalled gets here.
			s.log.Error("scheduler: journal record not written", "error", err)
			continue
		}
		d.scratch = b
		d.last = d.j.Append(b)
		d.since++
		d.sinceBytes += int64(len(b))
		fx.records[i] = record{}
	}
	// The records are written (Append copies them): their slice serves the
	// core's next change.
	s.core.fx.records = fx.records[:0]
	// Messages to workers go out at once, while their records are being
	// written: a worker re-reports what it holds when it reconnects, and a
	// restarted scheduler adopts an action whose dispatch record it lost
	// (core.adopt). Waiting for the disk here would cap each worker slot at
	// one action per commit. What clients and operators see waits.
	s.carryOut(effects{dispatch: fx.dispatch, hangUp: fx.hangUp})
	seen := effects{published: fx.published, idle: fx.idle, undrained: fx.undrained, lost: fx.lost}
	if len(d.held) == 0 && d.durable >= d.last {
		s.carryOut(seen)
	} else {
		d.held = append(d.held, heldEffects{seq: d.last, fx: seen})
	}
	// Snapshots cost a pause proportional to the state: with many live
	// operations, wait for proportionally more records.
	byCount := d.since >= snapshotEvery && d.since >= 2*len(s.core.ops)
	byBytes := d.sinceBytes >= snapshotBytes && d.sinceBytes >= 2*d.lastSnapBytes
	if (byCount || byBytes) && !d.snapping {
		s.startSnapshot()
	}
	return d.last
}

// onDurable is the journal's group-commit callback: it carries out the
// effects whose records are now durable. When the journal has failed it
// tells the operator's side (Options.OnJournalFailed) once, after
// releasing s.mu, so the callback may take locks of its own.
func (s *Scheduler) onDurable(seq uint64, err error) {
	if err != nil {
		if s.journalFailed(err) && s.onJournalFailed != nil {
			s.onJournalFailed(err)
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dur
	if d == nil || seq <= d.durable { // a commit during recovery cannot happen; be safe
		return
	}
	d.durable = seq
	i := 0
	for ; i < len(d.held) && d.held[i].seq <= seq; i++ {
		s.carryOut(d.held[i].fx)
		d.held[i] = heldEffects{}
	}
	d.held = d.held[i:]
	close(d.advanced)
	d.advanced = make(chan struct{})
}

// journalFailed records that the journal failed with err: new work is
// refused from now on, and what waited for the disk is carried out
// without it, so no client is left waiting. It reports whether this is
// the first failure (the journal reports one, but be safe).
func (s *Scheduler) journalFailed(err error) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dur
	if d == nil || d.failed != nil {
		return false
	}
	d.failed = err
	s.log.Error("scheduler: journal failed; new work is refused, work in flight finishes without being recorded; fix the disk and restart the scheduler", "error", err)
	for _, h := range d.held {
		s.carryOut(h.fx)
	}
	d.held = nil
	close(d.advanced)
	return true
}

// waitDurable returns once record seq is durable: then a client may be told
// about it. UNAVAILABLE if the journal failed.
func (s *Scheduler) waitDurable(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		d := s.dur
		if d == nil || d.durable >= seq {
			s.mu.Unlock()
			return nil
		}
		failed, ch := d.failed, d.advanced
		s.mu.Unlock()
		if failed != nil {
			return errJournalFailed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		}
	}
}

// JournalFailed reports whether the journal has failed: the scheduler
// then refuses new work until it is restarted, and the operator's health
// checks and metrics say so. False without a journal.
func (s *Scheduler) JournalFailed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dur != nil && s.dur.failed != nil
}

// checkJournal fails with UNAVAILABLE once the journal has failed: the
// scheduler can no longer keep its promises. Called with s.mu held.
func (s *Scheduler) checkJournal() error {
	if s.dur != nil && s.dur.failed != nil {
		return errJournalFailed
	}
	return nil
}

// errJournalFailed is what clients get once the journal cannot be written;
// the cause, which names paths on the scheduler's host, is in its log.
var errJournalFailed = status.Error(codes.Unavailable, "the scheduler cannot record work: its journal failed (the operator's log says why); retry against a restarted scheduler")

// startSnapshot copies the core's state under s.mu, and sorts, encodes and
// writes it in the background; the journal then drops the records it
// covers.
func (s *Scheduler) startSnapshot() {
	d := s.dur
	st := s.core.capture()
	seq := d.j.Rotate()
	d.since, d.sinceBytes, d.snapping = 0, 0, true
	d.snaps.Add(1)
	go func() {
		defer d.snaps.Done()
		start := time.Now()
		var b []byte
		err := st.seal()
		if err == nil {
			b, err = encodeState(st)
		}
		if err == nil {
			err = d.j.WriteSnapshot(seq, b)
		}
		if err != nil {
			s.log.Error("scheduler: snapshot not written", "record", seq, "error", err)
		} else {
			s.log.Info("scheduler: journal snapshot written", "record", seq, "bytes", len(b), "took", time.Since(start))
		}
		s.mu.Lock()
		d.snapping = false
		if err == nil {
			d.lastSnapBytes = int64(len(b))
		}
		s.mu.Unlock()
	}()
}
