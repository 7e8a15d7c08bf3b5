package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
)

// WriteSnapshot stores state as the snapshot after record seq (a number
// Rotate returned), then removes the segments and snapshots it makes
// obsolete. It waits until record seq is durable, so that the segment
// switch has happened; one snapshot is written at a time.
func (j *Journal) WriteSnapshot(seq uint64, state []byte) error {
	j.mu.Lock()
	if j.snapBusy {
		j.mu.Unlock()
		return errors.New("journal: a snapshot is already being written")
	}
	j.snapBusy = true
	j.mu.Unlock()
	defer func() {
		j.mu.Lock()
		j.snapBusy = false
		j.mu.Unlock()
	}()
	j.mu.Lock()
	for (j.durable < seq || j.rotated < seq) && j.err == nil {
		j.durCond.Wait()
	}
	err := j.err
	j.mu.Unlock()
	if err != nil {
		return err
	}
	var entries []os.DirEntry
	if err := j.writeSnapshotFile(seq, state); err != nil {
		return fmt.Errorf("journal: snapshot %d: %w", seq, err)
	}
	entries, err = os.ReadDir(j.dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	for _, e := range entries {
		kind, n, ok := parseName(e.Name())
		// A segment whose first record is at most seq ends before the
		// segment Rotate started at seq+1.
		if ok && n <= seq && (kind == "log" || n < seq) {
			os.Remove(filepath.Join(j.dir, e.Name()))
		}
	}
	return nil
}

func (j *Journal) writeSnapshotFile(seq uint64, state []byte) error {
	h := make([]byte, snapHeader, snapHeader+len(state))
	copy(h, snapMagic)
	b := h[len(snapMagic):]
	binary.LittleEndian.PutUint64(b[0:8], seq)
	binary.LittleEndian.PutUint64(b[8:16], uint64(len(state)))
	binary.LittleEndian.PutUint32(b[16:20], crc32.Update(crc32.Checksum(b[0:16], castagnoli), castagnoli, state))
	final := filepath.Join(j.dir, snapshotName(seq))
	tmp := final + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(append(h, state...))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(j.dir)
}
