package asset_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/storage"
)

// TestLeftoverTempFilesAreRemovedAtStart: a process killed mid-download,
// or mid-write of a record, leaves its temporary file behind, which
// nothing else would ever remove; New removes them.
func TestLeftoverTempFilesAreRemovedAtStart(t *testing.T) {
	dir := t.TempDir()
	leftovers := []string{filepath.Join(dir, "tmp", "fetch-1234"), filepath.Join(dir, "records", "tmp", "ab12-5678")}
	for _, p := range leftovers {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("half a download"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := asset.New(asset.Options{CAS: storage.NewMemoryBlobStore(), Dir: dir}); err != nil {
		t.Fatal(err)
	}
	for _, p := range leftovers {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after New: %v; want it gone", p, err)
		}
		if info, err := os.Stat(filepath.Dir(p)); err != nil || !info.IsDir() {
			t.Errorf("the temporary directory %s after New: %v", filepath.Dir(p), err)
		}
	}
}
