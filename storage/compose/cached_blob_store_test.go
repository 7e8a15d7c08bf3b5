package compose_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/grpctest"
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

// serveFront serves cas (a composite, as a front does) on a loopback port
// and returns a client of it that moves blobs over byteStreamAbove bytes
// with ByteStream and smaller ones with BatchReadBlobs.
func serveFront(t *testing.T, cas storage.BlobStore, byteStreamAbove int64) storage.BlobStore {
	t.Helper()
	srv := storage.NewServer(storage.ServerOptions{CAS: cas, AC: newDiskAC(t), SkipCompletenessChecks: true})
	t.Cleanup(srv.Close) // after the server's Stop, registered by Listen
	addr := grpctest.Listen(t, srv.Register, srv.GRPCServerOptions()...)
	return storage.NewRemoteBlobStore(grpctest.Dial(t, addr), storage.RemoteOptions{MaxBatchBytes: byteStreamAbove})
}

// A bit flipped in the cache's copy of a blob does not fail reads the
// backend can serve: the blob comes from the backend, and the cache is
// filled again. Over BatchReadBlobs and ByteStream, as a client reads.
func TestCachedCorruptCopyIsServedFromTheBackend(t *testing.T) {
	for _, tc := range []struct {
		name            string
		byteStreamAbove int64
	}{{"BatchReadBlobs", 1 << 20}, {"ByteStream", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			cacheDir := t.TempDir()
			cache := diskAt(t, cacheDir)
			c := compose.NewCachedBlobStore(cache, startNode(t).cas(), "central", nil)
			front := serveFront(t, c, tc.byteStreamAbove)
			data := bytes.Repeat([]byte("cached "), 300)
			d := putBytes(t, front, data)
			if !cache.Has(d) {
				t.Fatal("a written blob is not in the cache")
			}
			flipByte(t, cacheDir, d, 100)

			got, err := storage.GetBytes(context.Background(), front, d, d.SizeBytes())
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("read of a blob whose cached copy is corrupt: %d bytes, %v; want the backend's copy", len(got), err)
			}
			if got, err := storage.GetBytes(context.Background(), cache, d, d.SizeBytes()); err != nil || !bytes.Equal(got, data) {
				t.Fatalf("the cache after the read: %d bytes, %v; want it filled again", len(got), err)
			}
		})
	}
}

// blockingGets is a backend whose reads wait until the test releases
// them (or their context ends), as a backend that is down and being
// restarted does; entered counts the reads that reached it.
type blockingGets struct {
	storage.BlobStore
	entered chan struct{}
	release chan struct{}
}

func (b *blockingGets) Get(ctx context.Context, d digest.Digest, offset int64) (io.ReadCloser, error) {
	b.entered <- struct{}{}
	select {
	case <-b.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return b.BlobStore.Get(ctx, d, offset)
}

// Readers waiting for another's fill of the cache return when their own
// context ends, not when the fill does: each holds a ByteStream slot of
// the front. The fill goes on and serves whoever still waits.
func TestCachedReaderWaitingForAFillHonoursItsContext(t *testing.T) {
	backend := newDisk(t, 0)
	data := blobData(7)
	d := putBytes(t, backend, data)
	slow := &blockingGets{BlobStore: backend, entered: make(chan struct{}, 100), release: make(chan struct{})}
	var once sync.Once
	release := func() { once.Do(func() { close(slow.release) }) }
	t.Cleanup(release)
	c := compose.NewCachedBlobStore(newDisk(t, 64<<20), slow, "central", nil)

	first := make(chan error, 1)
	go func() {
		got, err := storagetest.ReadAll(t, c, d, 0)
		if err == nil && !bytes.Equal(got, data) {
			err = fmt.Errorf("got %d other bytes", len(got))
		}
		first <- err
	}()
	deadline := time.After(20 * time.Second)
	select {
	case <-slow.entered:
	case <-deadline:
		t.Fatal("the fill never reached the backend")
	}

	const waiters = 20
	gaveUp := make(chan error, waiters)
	for range waiters {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			r, err := c.Get(ctx, d, 0)
			if err == nil {
				r.Close()
			}
			gaveUp <- err
		}()
	}
	for i := range waiters {
		select {
		case err := <-gaveUp:
			if status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("a reader whose context ended: %v, want DEADLINE_EXCEEDED", err)
			}
		case <-deadline:
			t.Fatalf("%d of %d readers whose context ended are still waiting for the fill", waiters-i, waiters)
		}
	}
	if n := len(slow.entered); n != 0 {
		t.Fatalf("%d more reads reached the backend; want the one fill only", n)
	}
	release()
	if err := <-first; err != nil {
		t.Fatalf("the reader that waited for the fill: %v", err)
	}
}

// TestCachedFindMissingAsksTheBackend: a blob the backend has evicted
// since the cache took its copy is missing to the front's clients, who
// then upload it again. Answered from the cache, it was present, no
// client uploaded it, and the backend's action cache refused every
// result naming it for as long as the cache kept it (outside probe).
func TestCachedFindMissingAsksTheBackend(t *testing.T) {
	ctx := context.Background()
	backend := storage.NewMemoryBlobStore()
	c := compose.NewCachedBlobStore(newDisk(t, 64<<20), backend, "central", nil)
	d := putBytes(t, c, blobData(3))
	if missing, err := c.FindMissing(ctx, []digest.Digest{d}); err != nil || len(missing) != 0 {
		t.Fatalf("FindMissing of a blob written through: %v, %v", missing, err)
	}
	backend.Delete(d) // evicted by the backend
	if missing, err := c.FindMissing(ctx, []digest.Digest{d}); err != nil || len(missing) != 1 || missing[0] != d {
		t.Fatalf("FindMissing of a blob the backend evicted: %v, %v; want it missing", missing, err)
	}
	putBytes(t, c, blobData(3)) // the client's upload goes through again
	if missing, err := backend.FindMissing(ctx, []digest.Digest{d}); err != nil || len(missing) != 0 {
		t.Fatalf("the backend after the upload again: missing %v, %v", missing, err)
	}
}
