package storage_test

import (
	"os"
	"path/filepath"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// TestDiskStoresArePrivate: the disk CAS's and action cache's directories
// are mode 0700, and ones an earlier version left 0755 are tightened at
// start, with the directories below them: the host's other users cannot
// read tenants' blobs and results.
func TestDiskStoresArePrivate(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"cas/sha256/ab", "ac/cd"} { // as an earlier version left them
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cas, ac := diskStores(t, dir)
	d := putString(t, cas, "a tenant's source")
	if err := ac.Put(t.Context(), "", d, &repb.ActionResult{ExitCode: 1}); err != nil {
		t.Fatal(err)
	}
	acDirs, _ := filepath.Glob(filepath.Join(dir, "ac", "*"))
	p, ok := cas.Path(d)
	if !ok {
		t.Fatal("blob not on disk")
	}
	rel, _ := filepath.Rel(dir, p)
	if rel[:4] != "cas/" {
		t.Fatalf("blob at %s, not below %s/cas", p, dir)
	}
	// Every directory, to the fan-out ones, old and new: one a local user
	// opened before the upgrade (cas/sha256, say) is no way in either.
	if len(acDirs) != 2 {
		t.Fatalf("action cache directories %v, want ac/cd and the new entry's", acDirs)
	}
	for _, d := range append([]string{"cas", "cas/sha256", "cas/sha256/ab", filepath.Dir(rel), "ac", "tmp"}, acDirs...) {
		if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want mode 0700", d, st, err)
		}
	}
}
