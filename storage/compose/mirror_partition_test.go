package compose_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
)

// TestMirrorRepairsInTheInstanceOfTheCall: sides that keep a CAS per
// tenant (chosen by the call's instance name) are repaired in the
// instance of the lookup that found a blob on one side only, not in none:
// the copy lands in that tenant's CAS of the other side, and no other
// tenant's CAS gets it.
func TestMirrorRepairsInTheInstanceOfTheCall(t *testing.T) {
	partitioned := func() (*storage.PartitionedBlobStore, map[string]*storage.MemoryBlobStore) {
		parts := map[string]*storage.MemoryBlobStore{}
		return storage.NewPartitionedBlobStore(func(instance string) string { return "p-" + instance }, func(p string) (storage.BlobStore, error) {
			m := storage.NewMemoryBlobStore()
			parts[p] = m
			return m, nil
		}), parts
	}
	a, _ := partitioned()
	b, bParts := partitioned()
	rep := compose.NewRepairer(1, slog.New(slog.DiscardHandler))
	defer rep.Close()
	m := compose.NewMirroredBlobStore(compose.Mirror{Name: "a", Store: a}, compose.Mirror{Name: "b", Store: b}, rep, slog.New(slog.DiscardHandler))
	ctx := storage.WithInstance(context.Background(), "team-a")
	data := []byte("only on side a")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := a.Put(ctx, d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	if missing, err := m.FindMissing(ctx, []digest.Digest{d}); err != nil || len(missing) != 0 {
		t.Fatalf("FindMissing: %v, %v", missing, err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if missing, err := b.FindMissing(ctx, []digest.Digest{d}); err == nil && len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("side b's team-a CAS never got the repaired blob")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for p, s := range bParts {
		if p == "p-team-a" {
			continue
		}
		if missing, _ := s.FindMissing(context.Background(), []digest.Digest{d}); len(missing) == 0 {
			t.Fatalf("the repair copied team-a's blob into side b's partition %q", p)
		}
	}
}
