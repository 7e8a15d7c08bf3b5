package compose_test

import (
	"context"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/compose"
)

// BenchmarkFindMissing10k: one FindMissing of 10,000 digests, half of them
// stored, through each composite over loopback storage nodes (all in this
// process, sharing its cores).
func BenchmarkFindMissing10k(b *testing.B) {
	setups := []struct {
		name string
		make func(b *testing.B) storage.BlobStore
	}{
		{"OneNode", func(b *testing.B) storage.BlobStore { return startNode(b).cas() }},
		{"Sharded3", func(b *testing.B) storage.BlobStore {
			return sharded(b, startNode(b).cas(), startNode(b).cas(), startNode(b).cas())
		}},
		{"Mirrored2", func(b *testing.B) storage.BlobStore {
			return compose.NewMirroredBlobStore(compose.Mirror{Name: "a", Store: startNode(b).cas()},
				compose.Mirror{Name: "b", Store: startNode(b).cas()}, newRepairer(b), nil)
		}},
		{"CachedAllHits", func(b *testing.B) storage.BlobStore {
			return compose.NewCachedBlobStore(newDisk(b, 0), startNode(b).cas(), "remote", nil)
		}},
	}
	for _, s := range setups {
		b.Run(s.name, func(b *testing.B) {
			store := s.make(b)
			var ds []digest.Digest
			for i := range 10000 {
				data := []byte(fmt.Sprintf("bench blob %d", i))
				d := digest.FromBytes(repb.DigestFunction_SHA256, data)
				if i%2 == 0 || s.name == "CachedAllHits" {
					putBytes(b, store, data)
				}
				ds = append(ds, d)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := store.FindMissing(context.Background(), ds); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
