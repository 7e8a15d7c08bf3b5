package asset

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/paddock-build/paddock/internal/lru"
)

// record is what Push (or a verified fetch) stores against a key: the
// digest of a blob or of a root Directory, the blobs and trees it keeps
// alive, when it was made and when it stops being served.
type record struct {
	Hash      string    `json:"hash"`
	Size      int64     `json:"size"`
	Function  int32     `json:"digest_function"`
	Created   time.Time `json:"created"`
	ExpireAt  time.Time `json:"expire_at,omitzero"`
	RefBlobs  []string  `json:"references_blobs,omitempty"` // "hash/size"
	RefTrees  []string  `json:"references_directories,omitempty"`
	Qualifier []string  `json:"qualifiers,omitempty"` // name=value, for operators reading the files
}

// recordOverhead is what a record costs on disk besides its bytes: the
// block a small file takes on common file systems, and its inode. A
// record is counted as its length plus this, so that the bound holds for
// the many small records a client can make (one per allowed URL) as well
// as for a few large ones (a long bazel.canonical_id).
const recordOverhead = 4096

// recordStore keeps records as small JSON files named by key under dir,
// written to a temporary name and renamed, so a crash leaves the old
// record or the new one. Records survive restarts with the CAS they point
// into.
//
// Any client that may read the CAS makes a record with each FetchBlob of
// a new allowed URL, so the records are bounded: past maxBytes, the least
// recently written or found are removed (a client then downloads, or
// pushes, again). The order of use is rebuilt from the files' mtimes at
// start, so there it is the order they were written in.
//
// Safe for concurrent use: mu serializes writes and removals with the
// set, so that the set names exactly the files on disk; reads take no
// lock.
type recordStore struct {
	dir      string
	maxBytes int64
	mu       sync.Mutex
	set      *lru.Set[string, struct{}] // key → nothing; sized as the file plus recordOverhead
}

// newRecordStore opens the records under dir, removes temporary files an
// interrupted write left (the directory is this process's alone: the
// roles lock the directory it is in) and applies the bound.
func newRecordStore(dir string, maxBytes int64) (*recordStore, error) {
	tmp := filepath.Join(dir, "tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return nil, fmt.Errorf("asset records: clear interrupted writes: %w", err)
	}
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("asset records: %w", err)
	}
	s := &recordStore{dir: dir, maxBytes: maxBytes, set: lru.New[string, struct{}]()}
	if err := s.rebuild(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.evictLocked("")
	return s, nil
}

// rebuild adds every record file to the set, the most recently written
// in front (lru.OldestFirst).
func (s *recordStore) rebuild() error {
	var all []lru.Found[string]
	err := filepath.WalkDir(s.dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() {
			if path != s.dir && de.Name() == "tmp" {
				return filepath.SkipDir
			}
			return nil
		}
		key := de.Name()
		if !isRecordKey(key) || path != s.path(key) || !de.Type().IsRegular() {
			return nil // not a record: left alone
		}
		info, err := de.Info()
		if err != nil {
			return err
		}
		all = append(all, lru.Found[string]{Key: key, Size: info.Size(), Written: info.ModTime()})
		return nil
	})
	if err != nil {
		return fmt.Errorf("asset records: scan %s: %w", s.dir, err)
	}
	lru.OldestFirst(all, time.Now())
	for _, f := range all {
		s.set.Put(f.Key, struct{}{}, f.Size+recordOverhead)
	}
	return nil
}

// isRecordKey reports whether name is a key recordKey makes: 64 lowercase
// hex characters.
func isRecordKey(name string) bool {
	if len(name) != 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// path spreads records over 256 directories by their key's first byte.
func (s *recordStore) path(key string) string {
	return filepath.Join(s.dir, key[:2], key)
}

func (s *recordStore) put(key string, r record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.write(key, data); err != nil {
		return fmt.Errorf("asset record: %w", err)
	}
	s.set.Put(key, struct{}{}, int64(len(data))+recordOverhead)
	s.evictLocked(key)
	return nil
}

// write puts data in key's file through a temporary file.
func (s *recordStore) write(key string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(s.path(key)), 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), key+"-*")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), s.path(key))
	}
	if werr != nil {
		os.Remove(tmp.Name())
	}
	return werr
}

// evictLocked removes the least recently used records past the bound,
// except keep (the record just written, even if it alone is over it).
func (s *recordStore) evictLocked(keep string) {
	for _, e := range s.set.EvictOver(s.maxBytes, func(k string, _ struct{}) bool { return k == keep }) {
		os.Remove(s.path(e.Key))
	}
}

// get returns the record under key, and marks it used; ok is false when
// there is none or it cannot be read (a damaged record is as good as
// missing: the client fetches again).
func (s *recordStore) get(key string) (record, bool, error) {
	data, err := os.ReadFile(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return record{}, false, nil
	}
	if err != nil {
		return record{}, false, fmt.Errorf("asset record: %w", err)
	}
	var r record
	if json.Unmarshal(data, &r) != nil {
		return record{}, false, nil
	}
	s.set.Get(key)
	return r, true, nil
}

// remove deletes an expired or stale record.
func (s *recordStore) remove(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.set.Remove(key)
	os.Remove(s.path(key))
}
