package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/paddock-build/paddock/digest"
)

// rebuild scans cas/ into the index. Files whose names are not valid hashes
// are stray and removed; their size comes from stat.
func (s *DiskBlobStore) rebuild() error {
	type found struct {
		d     digest.Digest
		mtime time.Time
	}
	var all []found
	for _, fn := range digest.Supported {
		root := filepath.Join(s.casDir, strings.ToLower(fn.String()))
		err := filepath.WalkDir(root, func(path string, de fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if de.IsDir() {
				return nil
			}
			info, err := de.Info()
			if err != nil {
				return err
			}
			d, err := digest.New(fn, de.Name(), info.Size())
			// Blobs are not fsynced (a killed process cannot expose a
			// partial file: blobs are written unnamed and linked when
			// whole), so after a power loss a file may be empty under a
			// non-empty hash: drop it. Other damage is caught by the hash
			// check on read.
			if err != nil || !info.Mode().IsRegular() || filepath.Base(filepath.Dir(path)) != de.Name()[:2] || (info.Size() == 0 && !d.IsEmpty()) {
				s.log.Warn("removing stray file from CAS", "path", path)
				return os.Remove(path)
			}
			all = append(all, found{d, info.ModTime()})
			return nil
		})
		if err != nil {
			return fmt.Errorf("scan %s: %w", root, err)
		}
	}
	// A time ahead of the clock counts as never used: a file dated in the
	// future (by hand, or by a clock that was ahead) would otherwise be
	// the most recently used after every restart, and touches, which
	// find it newer, would leave its time alone.
	now := s.clock.Now()
	for i := range all {
		if all[i].mtime.After(now) {
			all[i].mtime = time.Time{}
		}
	}
	// Oldest first, each pushed to the front: the newest ends up in front.
	slices.SortFunc(all, func(a, b found) int { return a.mtime.Compare(b.mtime) })
	for _, f := range all {
		s.index(&diskEntry{d: f.d, touched: f.mtime})
	}
	return nil
}
