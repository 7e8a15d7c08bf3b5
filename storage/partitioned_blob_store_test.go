package storage_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// TestAPartitionOpeningHoldsUpOnlyItsOwnCalls: while one partition is
// being opened (a disk CAS lists its blobs, seconds for millions), calls
// for other partitions go on, calls for it wait for that one open, and
// an open that failed is tried again by the next call. The open ran
// under the store's one lock, and a tenant's first call after a restart
// froze every tenant's storage calls for 18 s.
func TestAPartitionOpeningHoldsUpOnlyItsOwnCalls(t *testing.T) {
	release, started := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	opened := map[string]int{}
	s := storage.NewPartitionedBlobStore(byFirstSegment, func(p string) (storage.BlobStore, error) {
		mu.Lock()
		opened[p]++
		n := opened[p]
		mu.Unlock()
		switch {
		case p == "p-slow":
			close(started)
			<-release
		case p == "p-flaky" && n == 1:
			return nil, errors.New("disk not ready")
		}
		return storage.NewMemoryBlobStore(), nil
	})
	ctx := func(instance string) context.Context {
		return storage.WithInstance(context.Background(), instance)
	}
	d := sha("blob")
	slow := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := s.FindMissing(ctx("slow"), []digest.Digest{d})
			slow <- err
		}()
	}
	<-started
	// Another partition's calls are served while p-slow is opening.
	fast := make(chan error, 1)
	go func() { fast <- s.Put(ctx("fast"), d, strings.NewReader("blob")) }()
	select {
	case err := <-fast:
		if err != nil {
			t.Fatalf("a call for another partition while one opens: %v", err)
		}
	case <-time.After(time.Minute): // a bound against a hang, not a speed
		close(release)
		t.Fatal("a call for another partition waited for one being opened")
	}
	select {
	case err := <-slow:
		t.Fatalf("a call for the partition being opened returned before its open did: %v", err)
	default:
	}
	close(release)
	for range 2 {
		if err := <-slow; err != nil {
			t.Fatal(err)
		}
	}
	if opened["p-slow"] != 1 {
		t.Errorf("p-slow opened %d times by two calls, want once", opened["p-slow"])
	}
	// A failed open is not kept.
	if _, err := s.FindMissing(ctx("flaky"), []digest.Digest{d}); err == nil || !strings.Contains(err.Error(), "disk not ready") {
		t.Fatalf("the first call for a partition that fails to open: %v", err)
	}
	if _, err := s.FindMissing(ctx("flaky"), []digest.Digest{d}); err != nil {
		t.Fatalf("the next call, which opens it again: %v", err)
	}
}

// roomStore is a partition that records the room it is asked for.
type roomStore struct {
	*storage.MemoryBlobStore
	asked *[]string
	name  string
}

func (r roomStore) MakeRoom(_ context.Context, need int64) error {
	*r.asked = append(*r.asked, r.name)
	return status.Error(codes.ResourceExhausted, "no room here") // nor is another partition asked instead
}

// TestMakeRoomAsksOnlyTheActionsPartition: room for an action that found
// the disk full is asked of its own tenant's partition alone: asked of
// every partition in turn, one tenant's action emptied another's
// partition in one attempt (outside probe).
func TestMakeRoomAsksOnlyTheActionsPartition(t *testing.T) {
	var asked []string
	p := storage.NewPartitionedBlobStore(func(instance string) string { return "p-" + instance }, func(partition string) (storage.BlobStore, error) {
		return roomStore{storage.NewMemoryBlobStore(), &asked, partition}, nil
	})
	for _, inst := range []string{"a", "b"} { // both partitions opened
		if _, err := p.FindMissing(storage.WithInstance(context.Background(), inst), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.MakeRoom(storage.WithInstance(context.Background(), "a"), 1<<20); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("MakeRoom: %v, want its partition's RESOURCE_EXHAUSTED", err)
	}
	if len(asked) != 1 || asked[0] != "p-a" {
		t.Errorf("room asked of %v, want p-a alone", asked)
	}
}
