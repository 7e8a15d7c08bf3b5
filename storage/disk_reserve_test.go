package storage_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/bytestream"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestDeclaredSizeIsNotReservedUpFront: an upload reserves room in the CAS
// as its bytes arrive, not all the size its resource name declares. Before,
// one byte sent for a blob declared as large as the CAS evicted every
// stored blob and refused every other upload while its stream stayed open
// (and for the minute it stayed parked after).
func TestDeclaredSizeIsNotReservedUpFront(t *testing.T) {
	const size = 4 << 20
	disk := newDisk(t, t.TempDir(), size)
	ts := startServer(t, storage.ServerOptions{CAS: disk, UploadIdleTimeout: time.Minute})
	var stored []digest.Digest
	for i := range 6 {
		stored = append(stored, putString(t, disk, strings.Repeat(string(rune('a'+i)), 500<<10)))
	}
	huge := digest.MustParse(strings.Repeat("ab", 32) + "/" + "4190000") // nearly the whole CAS, blocks and inode counted
	writePart(t, ts, writeName(huge), []byte("x"))                       // and it stays open
	if m := missing(t, disk, stored...); len(m) > 1 {
		t.Fatalf("one byte of a declared %d-byte upload evicted %d of %d stored blobs", huge.SizeBytes(), len(m), len(stored))
	}
	data, d := randData(t, 300<<10)
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), Data: data, FinishWrite: true}); err != nil {
		t.Fatalf("an upload beside the open one: %v", err)
	}
	if m := missing(t, disk, d); m[d] {
		t.Fatal("the upload beside the open one was not stored")
	}
}

// TestManyParkedOneByteUploadsEvictNothing: an upload reserves nothing
// before its bytes arrive. Reserving a first MiB (a sixteenth of the CAS
// here) up front let a few parked uploads of one byte each, a few hundred
// against a real CAS, evict every stored blob and refuse every upload for
// the minute they stayed parked.
func TestManyParkedOneByteUploadsEvictNothing(t *testing.T) {
	disk := newDisk(t, t.TempDir(), 4<<20)
	ts := startServer(t, storage.ServerOptions{CAS: disk, UploadIdleTimeout: time.Minute})
	var stored []digest.Digest
	for i := range 6 {
		stored = append(stored, putString(t, disk, strings.Repeat(string(rune('a'+i)), 500<<10)))
	}
	for i := range 40 {
		d := digest.MustParse(fmt.Sprintf("%064x/%d", i+1, 1<<20))
		writePart(t, ts, writeName(d), []byte("x"))
	}
	if m := missing(t, disk, stored...); len(m) > 0 {
		t.Fatalf("40 open uploads of one byte each evicted %d of %d stored blobs", len(m), len(stored))
	}
	data, d := randData(t, 300<<10)
	if _, err := write(t, ts, &bytestream.WriteRequest{ResourceName: writeName(d), Data: data, FinishWrite: true}); err != nil {
		t.Fatalf("an upload beside the open ones: %v", err)
	}
}

// TestStoringAStoredBlobAgainKeepsItAlive: a Put of a blob already stored
// (BatchUpdateBlobs without FindMissingBlobs first) moves it to the front
// of the eviction order, as FindMissing does. Before, it was answered OK
// and evicted by the next uploads.
func TestStoringAStoredBlobAgainKeepsItAlive(t *testing.T) {
	disk := newDisk(t, t.TempDir(), 4<<20)
	kept := putString(t, disk, strings.Repeat("k", 500<<10))
	for i := range 6 {
		putString(t, disk, strings.Repeat(string(rune('a'+i)), 500<<10))
	}
	putString(t, disk, strings.Repeat("k", 500<<10)) // stored again
	for i := range 3 {
		putString(t, disk, strings.Repeat(string(rune('p'+i)), 500<<10))
	}
	if m := missing(t, disk, kept); m[kept] {
		t.Fatal("a blob stored again was evicted before blobs stored once, earlier")
	}
}
