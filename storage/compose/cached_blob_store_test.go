package compose_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// Writes go through: when Put returns, the backend has the blob (and the
// cache a copy); reads fill the cache; cached blobs are served, and
// looked up, with the backend down.
func TestCachedWritesThroughAndReadsFill(t *testing.T) {
	ctx := context.Background()
	n := startNode(t)
	backend := n.cas()
	cache := newDisk(t, 64<<20)
	c := compose.NewCachedBlobStore(cache, backend, "central", nil)

	written := putBytes(t, c, blobData(5))
	if missing, err := backend.FindMissing(ctx, []digest.Digest{written}); err != nil || len(missing) != 0 {
		t.Fatalf("backend after a write through the cache: missing %v, %v", missing, err)
	}
	if !cache.Has(written) {
		t.Fatal("a written blob is not kept in the cache")
	}
	read := putBytes(t, backend, blobData(10))
	if cache.Has(read) {
		t.Fatal("cache has a blob nobody read through it")
	}
	if got, err := storagetest.ReadAll(t, c, read, 7); err != nil || !bytes.Equal(got, blobData(10)[7:]) {
		t.Fatalf("read through the cache: %v", err)
	}
	if !cache.Has(read) {
		t.Fatal("a read did not fill the cache")
	}

	n.stop()
	for _, d := range []digest.Digest{written, read} {
		if got, err := storagetest.ReadAll(t, c, d, 0); err != nil || len(got) != int(d.SizeBytes()) {
			t.Fatalf("cached blob with the backend down: %v", err)
		}
	}
	if missing, err := c.FindMissing(ctx, []digest.Digest{written, read}); err != nil || len(missing) != 0 {
		t.Fatalf("FindMissing of cached blobs with the backend down: %v, %v", missing, err)
	}
	other := digest.FromBytes(written.Function(), []byte("not cached"))
	_, err := c.FindMissing(ctx, []digest.Digest{written, other})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), `"central"`) {
		t.Fatalf("FindMissing of an uncached blob with the backend down: %v, want UNAVAILABLE naming central", err)
	}
	if err := c.Put(ctx, other, bytes.NewReader([]byte("not cached"))); status.Code(err) != codes.Unavailable {
		t.Fatalf("Put with the backend down: %v", err)
	}
	if cache.Has(other) {
		t.Fatal("the cache kept a blob its backend never stored")
	}
}

// The cache stays within its bound; blobs larger than it are read past it.
func TestCachedIsBounded(t *testing.T) {
	backend := startNode(t).cas()
	cache := newDisk(t, 1<<20)
	c := compose.NewCachedBlobStore(cache, backend, "central", nil)
	var ds []digest.Digest
	for i := range 12 {
		ds = append(ds, putBytes(t, backend, bytes.Repeat([]byte{byte(i)}, 200<<10)))
	}
	big := putBytes(t, backend, bytes.Repeat([]byte("big"), 1<<20))
	for _, d := range append(ds, big) {
		if _, err := storagetest.ReadAll(t, c, d, 0); err != nil {
			t.Fatal(err)
		}
	}
	used, _, evicted := cache.Stats()
	if used > 1<<20 || evicted == 0 {
		t.Fatalf("cache holds %d bytes (bound 1 MiB), evicted %d", used, evicted)
	}
	if cache.Has(big) {
		t.Fatal("a blob larger than the cache was cached")
	}
}

var _ storage.BlobStore = (*compose.CachedBlobStore)(nil)
