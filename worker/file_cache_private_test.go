package worker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileCacheIsPrivate: the file cache's directories are mode 0700, so
// the host's other users cannot read tenants' inputs there, while an input
// linked from it into an input root stays readable by the sandbox (mode
// 0444 on the shared inode).
func TestFileCacheIsPrivate(t *testing.T) {
	dir := t.TempDir()
	c, d := linkLimitCache(t, dir, 1<<20, 1000, "a tenant's input")
	dst := filepath.Join(dir, "root", "in")
	if err := os.Mkdir(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := c.Link(context.Background(), d, false, dst); err != nil {
		t.Fatal(err)
	}
	checkInput(t, dst, "a tenant's input", 0o444)
	for _, p := range []string{c.opts.Dir, c.tmpDir} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o700 {
			t.Errorf("%s: %v, %v; want mode 0700", strings.TrimPrefix(p, dir), st, err)
		}
	}
}
