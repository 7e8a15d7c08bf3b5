// Package testfs has file-system helpers for tests: temporary directories
// every user may search, and trees of files written from a map.
package testfs

import (
	"os"
	"path/filepath"
	"testing"
)

// SearchableTempDir is a new directory under parent (os.TempDir if
// parent is "") whose name starts with prefix, mode 0755 so that every
// user may search it (as sandboxes' unprivileged users must search the
// parents of what they reach; t.TempDir's directories are 0700), and
// removed when the test ends.
func SearchableTempDir(t testing.TB, parent, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteFiles writes each path → content of files under dir (files 0644,
// their directories 0755, made as needed).
func WriteFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		p = filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
