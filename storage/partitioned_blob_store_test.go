package storage_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"
)

// byFirstSegment partitions by an instance name's first path segment.
func byFirstSegment(instance string) string {
	first, _, _ := strings.Cut(instance, "/")
	return "p-" + first
}

func TestPartitionedBlobStoreConformance(t *testing.T) {
	storagetest.TestBlobStore(t, func(t *testing.T) storage.BlobStore {
		return storage.NewPartitionedBlobStore(byFirstSegment, func(string) (storage.BlobStore, error) { return storage.NewMemoryBlobStore(), nil })
	})
}

// TestPartitionsDoNotSeeEachOther: a blob stored for one instance is
// missing, and NOT_FOUND, for an instance of another partition, and
// present for another instance of the same partition.
func TestPartitionsDoNotSeeEachOther(t *testing.T) {
	opened := map[string]int{}
	s := storage.NewPartitionedBlobStore(byFirstSegment, func(p string) (storage.BlobStore, error) {
		opened[p]++
		return storage.NewMemoryBlobStore(), nil
	})
	a := storage.WithInstance(context.Background(), "a/one")
	d := sha("a's blob")
	if err := s.Put(a, d, strings.NewReader("a's blob")); err != nil {
		t.Fatal(err)
	}
	for instance, wantMissing := range map[string]bool{"a/one": false, "a/two": false, "a": false, "b": true, "": true} {
		ctx := storage.WithInstance(context.Background(), instance)
		missing, err := s.FindMissing(ctx, []digest.Digest{d})
		if err != nil || (len(missing) == 1) != wantMissing {
			t.Errorf("FindMissing on %q = %v, %v; want missing=%v", instance, missing, err, wantMissing)
		}
		if wantMissing {
			_, err := s.Get(ctx, d, 0)
			wantStatus(t, err, codes.NotFound)
		}
	}
	if opened["p-a"] != 1 {
		t.Errorf("partition p-a opened %d times, want once", opened["p-a"])
	}
}
