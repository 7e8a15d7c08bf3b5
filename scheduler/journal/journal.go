// Package journal is an append-only log of opaque records with snapshots,
// written with group commit. The scheduler uses it to survive restarts.
//
// Lifecycle. Open reads the directory: the newest snapshot, then every
// record after it, in order (Recovered). A torn or corrupt tail of the last
// segment (a crash in the middle of a write, a flipped bit) is cut off and
// reported in the log; everything before it is kept. Corruption anywhere
// else, or a gap between segments, fails Open: the caller must never start
// from a state that is silently wrong.
//
// Then the caller Appends records, which only copies them into a buffer and
// returns their sequence number, so it can be called under the caller's
// own lock. A writer goroutine takes everything buffered, writes it with one
// write and (under SyncFsync) one fdatasync, and calls OnDurable with the
// last sequence number written: this is the group commit, and the caller
// releases the effects of the records up to that number only then (raft's
// Ready pattern). The writer keeps disk blocks reserved ahead of what it
// writes (prealloc.go), so that a file system that fills up for a while
// does not fail the journal. From time to time the caller serialises its
// state, calls Rotate (under its lock, so the state matches the records so far)
// and then WriteSnapshot; older segments and snapshots are then removed.
package journal

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// SyncPolicy says how far a record must go before it counts as durable.
type SyncPolicy int

const (
	// SyncFsync: written and flushed to the disk (fdatasync). Survives a
	// crash of the machine.
	SyncFsync SyncPolicy = iota
	// SyncWrite: written to the kernel (write). Survives a crash of the
	// process, not of the machine; cheaper.
	SyncWrite
)

// ParseSyncPolicy reads the config names "fsync" and "write".
func ParseSyncPolicy(s string) (SyncPolicy, error) {
	switch s {
	case "", "fsync":
		return SyncFsync, nil
	case "write":
		return SyncWrite, nil
	}
	return 0, fmt.Errorf("journal sync policy %q: want fsync or write", s)
}

// Options configure Open.
type Options struct {
	// Dir holds the journal; created if missing.
	Dir string
	// Sync is the durability of a record before OnDurable reports it.
	Sync SyncPolicy
	// OnDurable is called by the writer goroutine after each group commit
	// with the last sequence number now durable, or with the error that
	// stopped the journal (after which nothing more is written). The writer
	// holds no lock of its own while calling it, so it may take the
	// caller's lock (and call Append under it).
	OnDurable func(seq uint64, err error)
	// Logger receives what recovery dropped. Defaults to slog.Default().
	Logger *slog.Logger
}

// Recovered is what Open found.
type Recovered struct {
	// Snapshot is the newest snapshot's payload, nil if none.
	Snapshot []byte
	// SnapshotSeq is the sequence number of the last record the snapshot
	// covers (0 without one).
	SnapshotSeq uint64
	// Records follow the snapshot, in order; the first has sequence
	// number SnapshotSeq+1.
	Records [][]byte
	// Dropped describes what was cut off a torn or corrupt tail; empty if
	// nothing was.
	Dropped string
}

// Journal is an open journal. Append and Rotate are safe for concurrent use
// and never block on I/O.
type Journal struct {
	dir       string
	sync      SyncPolicy
	onDurable func(uint64, error)
	log       *slog.Logger

	mu       sync.Mutex
	wake     *sync.Cond // signalled when buf or rotations change, or on close
	buf      []byte     // frames not yet written
	spare    []byte
	seq      uint64     // last appended
	rotateAt []rotation // pending segment switches, in order
	closing  bool
	durable  uint64
	durCond  *sync.Cond // signalled when durable advances or err is set
	err      error
	snapBusy bool
	rotated  uint64 // seq of the last segment switch done

	f       *os.File // current segment, owned by the writer goroutine
	done    chan struct{}
	written uint64 // last seq written by the writer (writer goroutine only)

	// The current segment's size and reserve (prealloc.go); writer
	// goroutine only, like f.
	size          int64 // bytes written to f
	reserved      int64 // f's blocks are reserved up to this offset; 0: none
	reserveFailed bool  // the last reservation failed, and the log said so
	noReserve     bool  // the file system has no fallocate: not tried again
}

// rotation is a segment switch after record seq, which ends at byte off
// of buf.
type rotation struct {
	seq uint64
	off int
}

// Open recovers the journal in opts.Dir and starts its writer.
func Open(opts Options) (*Journal, *Recovered, error) {
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	j := &Journal{dir: opts.Dir, sync: opts.Sync, onDurable: opts.OnDurable, log: opts.Logger, done: make(chan struct{})}
	if j.log == nil {
		j.log = slog.Default()
	}
	if j.onDurable == nil {
		j.onDurable = func(uint64, error) {}
	}
	j.wake = sync.NewCond(&j.mu)
	j.durCond = sync.NewCond(&j.mu)
	rec, tail, err := recoverDir(opts.Dir, j.log)
	if err != nil {
		return nil, nil, err
	}
	j.seq = rec.SnapshotSeq + uint64(len(rec.Records))
	j.durable, j.written = j.seq, j.seq
	if tail.path != "" {
		j.f, err = os.OpenFile(tail.path, os.O_WRONLY, 0)
		if err == nil {
			err = j.f.Truncate(tail.size)
		}
		if err == nil {
			_, err = j.f.Seek(tail.size, 0)
		}
		if err == nil {
			j.size = tail.size
			j.reserve(0)
		}
	} else {
		err = j.createSegment(j.seq + 1)
	}
	if err != nil {
		if j.f != nil {
			j.f.Close()
		}
		return nil, nil, fmt.Errorf("journal: open segment: %w", err)
	}
	go j.writer()
	return j, rec, nil
}

// Append adds one record and returns its sequence number. The record is
// durable once OnDurable reports that number (or a larger one).
func (j *Journal) Append(rec []byte) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = appendFrame(j.buf, rec)
	j.seq++
	j.wake.Signal()
	return j.seq
}

// LastSeq is the sequence number of the last record appended.
func (j *Journal) LastSeq() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq
}

// Rotate starts a new segment after the records appended so far and
// returns the last one's sequence number: the seq to pass to WriteSnapshot
// with a snapshot of the state after that record. Call it under the lock
// that orders Appends with the state.
func (j *Journal) Rotate() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.rotateAt = append(j.rotateAt, rotation{seq: j.seq, off: len(j.buf)})
	j.wake.Signal()
	return j.seq
}

// WaitDurable blocks until record seq is durable or the journal failed.
func (j *Journal) WaitDurable(seq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.durable < seq && j.err == nil {
		j.durCond.Wait()
	}
	return j.err
}

// Err returns the error that stopped the writer, if any.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Close writes what is buffered, flushes it and stops the writer.
func (j *Journal) Close() error {
	j.mu.Lock()
	j.closing = true
	j.wake.Signal()
	j.mu.Unlock()
	<-j.done
	err := j.f.Sync()
	j.release()
	if cerr := j.f.Close(); err == nil {
		err = cerr
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	return err
}

// writer is the group commit loop: everything appended while the previous
// batch was being written goes out in the next one.
func (j *Journal) writer() {
	defer close(j.done)
	for {
		j.mu.Lock()
		for len(j.buf) == 0 && len(j.rotateAt) == 0 && !j.closing {
			j.wake.Wait()
		}
		if len(j.buf) == 0 && len(j.rotateAt) == 0 && j.closing {
			j.mu.Unlock()
			return
		}
		buf, seq, rots := j.buf, j.seq, j.rotateAt
		j.buf, j.spare, j.rotateAt = j.spare[:0], nil, nil
		j.mu.Unlock()

		err := j.writeBatch(buf, seq, rots)
		j.mu.Lock()
		j.spare = buf[:0]
		if err != nil {
			j.err = fmt.Errorf("journal: %w", err)
			j.closing = true
		} else {
			j.durable = seq
			if len(rots) > 0 {
				j.rotated = rots[len(rots)-1].seq
			}
		}
		j.durCond.Broadcast()
		err = j.err
		j.mu.Unlock()
		j.onDurable(seq, err)
		if err != nil {
			return
		}
	}
}

// writeBatch writes buf, whose last record is seq, switching segments at
// each rotation.
func (j *Journal) writeBatch(buf []byte, seq uint64, rots []rotation) error {
	off := 0
	for _, r := range rots {
		if err := j.write(buf[off:r.off]); err != nil {
			return err
		}
		off = r.off
		if err := j.f.Sync(); err != nil {
			return err
		}
		j.release()
		if err := j.f.Close(); err != nil {
			return err
		}
		if err := j.createSegment(r.seq + 1); err != nil {
			return err
		}
	}
	if err := j.write(buf[off:]); err != nil {
		return err
	}
	if j.sync == SyncFsync && len(buf) > off {
		if err := unix.Fdatasync(int(j.f.Fd())); err != nil {
			return fmt.Errorf("fdatasync %s: %w", j.f.Name(), err)
		}
	}
	j.written = seq
	return nil
}

// write appends b to the current segment, into reserved blocks if it can.
func (j *Journal) write(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	j.reserve(int64(len(b)))
	n, err := j.f.Write(b)
	j.size += int64(n)
	return err // a *PathError: it names the segment
}

// createSegment creates the segment whose first record is first, with its
// header, makes its name durable, and makes it the current segment, with
// its reserve. On an error the segment is current still, for Close to
// close.
func (j *Journal) createSegment(first uint64) error {
	path := filepath.Join(j.dir, segmentName(first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	j.f, j.size, j.reserved = f, 0, 0
	if err := j.write([]byte(segmentMagic)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	return syncDir(j.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
