package worker_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/worker"
)

// TestFileLargerThanTheCacheIsNotKept: an input larger than the whole
// file cache is linked for its action and not kept: the cache never
// evicts the entry it has just added, so a 4 GiB executable input stayed
// beside a 2 GiB cache until some other input came. A smaller one is
// kept as before.
func TestFileLargerThanTheCacheIsNotKept(t *testing.T) {
	dir := t.TempDir()
	cas := storage.NewMemoryBlobStore()
	files, err := worker.NewFileCache(worker.FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas, MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []digest.Digest{putBlob(t, cas, bytes.Repeat([]byte{'b'}, 100<<10)), putBlob(t, cas, []byte("small"))} {
		dst := filepath.Join(dir, d.Hash()[:8])
		if err := files.Link(context.Background(), d, true, dst); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Stat(dst); err != nil || st.Size() != d.SizeBytes() {
			t.Fatalf("input %s linked: %v, %v", d, st, err)
		}
		want := int64(0)
		if d.SizeBytes() <= 64<<10 {
			want = d.SizeBytes()
		}
		if kept, _ := files.Stats(); kept != want {
			t.Fatalf("after linking an input of %d bytes the cache keeps %d bytes, want %d", d.SizeBytes(), kept, want)
		}
	}
}
