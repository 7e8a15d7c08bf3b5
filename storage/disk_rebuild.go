package storage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/lru"
)

// rebuild scans cas/ into the index. Files whose names are not valid hashes
// are stray and removed; their size comes from stat.
func (s *DiskBlobStore) rebuild() error {
	var all []lru.Found[digest.Digest]
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
			all = append(all, lru.Found[digest.Digest]{Key: d, Size: info.Size(), Written: info.ModTime()})
			return nil
		})
		if err != nil {
			return fmt.Errorf("scan %s: %w", root, err)
		}
	}
	// Oldest first, each pushed to the front: the newest ends up in front
	// (a time ahead of the clock counts as never used).
	lru.OldestFirst(all, s.clock.Now())
	for _, f := range all {
		s.index(&diskEntry{d: f.Key, touched: f.Written})
	}
	return nil
}
