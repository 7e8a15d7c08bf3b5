package storage_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/paddock-build/paddock/storage"
)

// TestDiskStoresArePrivate: the disk CAS's and action cache's directories
// are mode 0700, and ones an earlier version left 0755 are tightened at
// start: the host's other users cannot read tenants' blobs and results.
func TestDiskStoresArePrivate(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"cas", "ac"} { // as an earlier version left them
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cas, err := storage.NewDiskBlobStore(storage.DiskOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storage.NewDiskActionCache(dir, nil); err != nil {
		t.Fatal(err)
	}
	d := putString(t, cas, "a tenant's source")
	p, ok := cas.Path(d)
	if !ok {
		t.Fatal("blob not on disk")
	}
	rel, _ := filepath.Rel(dir, p)
	if rel[:4] != "cas/" {
		t.Fatalf("blob at %s, not below %s/cas", p, dir)
	}
	for _, d := range []string{"cas", "ac", "tmp"} {
		if st, err := os.Stat(filepath.Join(dir, d)); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want mode 0700", d, st, err)
		}
	}
}
