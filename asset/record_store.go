package asset

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
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

// recordStore keeps records as small JSON files named by key under dir,
// written to a temporary name and renamed, so a crash leaves the old
// record or the new one. Records survive restarts with the CAS they point
// into. Safe for concurrent use: the last rename wins.
type recordStore struct {
	dir string
}

func newRecordStore(dir string) (*recordStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o700); err != nil {
		return nil, fmt.Errorf("asset records: %w", err)
	}
	return &recordStore{dir: dir}, nil
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
	if err := os.MkdirAll(filepath.Dir(s.path(key)), 0o700); err != nil {
		return fmt.Errorf("asset record: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), key+"-*")
	if err != nil {
		return fmt.Errorf("asset record: %w", err)
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
		return fmt.Errorf("asset record: %w", werr)
	}
	return nil
}

// get returns the record under key; ok is false when there is none or it
// cannot be read (a damaged record is as good as missing: the client
// fetches again).
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
	return r, true, nil
}

// remove deletes an expired or stale record.
func (s *recordStore) remove(key string) {
	os.Remove(s.path(key))
}
