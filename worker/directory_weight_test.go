package worker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/paddock-build/paddock/digest"
)

// heapPerCopy is the heap that each of copies results of fn holds, read
// with runtime.MemStats after a collection before and after making them.
func heapPerCopy(copies int, fn func(i int) any) float64 {
	held := make([]any, copies)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range held {
		held[i] = fn(i)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(held)
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(copies)
}

// weightShapes are Directories of n entries: typical ones, and ones whose
// wire form is as small as it can be for the messages they hold.
var weightShapes = []struct {
	name    string
	typical bool // the weight should not be far above the heap
	dir     func(n int) *repb.Directory
}{
	{"files, 7-byte names, SHA-256 digests", true, func(n int) *repb.Directory {
		d := &repb.Directory{}
		for i := range n {
			d.Files = append(d.Files, &repb.FileNode{Name: fmt.Sprintf("f%06d", i), Digest: testHash(i)})
		}
		return d
	}},
	{"files, 200-byte names", true, func(n int) *repb.Directory {
		d := &repb.Directory{}
		for i := range n {
			d.Files = append(d.Files, &repb.FileNode{Name: fmt.Sprintf("%0200d", i), Digest: testHash(i), IsExecutable: true})
		}
		return d
	}},
	{"directories, 7-byte names", true, func(n int) *repb.Directory {
		d := &repb.Directory{}
		for i := range n {
			d.Directories = append(d.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%06d", i), Digest: testHash(i)})
		}
		return d
	}},
	{"symlinks, short names and targets", true, func(n int) *repb.Directory {
		d := &repb.Directory{}
		for i := range n {
			d.Symlinks = append(d.Symlinks, &repb.SymlinkNode{Name: fmt.Sprintf("s%06d", i), Target: fmt.Sprintf("../t/%06d", i)})
		}
		return d
	}},
	{"empty FileNodes", false, func(n int) *repb.Directory {
		d := &repb.Directory{}
		for range n {
			d.Files = append(d.Files, &repb.FileNode{})
		}
		return d
	}},
	{"empty NodeProperty entries", false, func(n int) *repb.Directory {
		d := &repb.Directory{NodeProperties: &repb.NodeProperties{}}
		for range n {
			d.NodeProperties.Properties = append(d.NodeProperties.Properties, &repb.NodeProperty{})
		}
		return d
	}},
	{"files with every NodeProperties field", false, func(n int) *repb.Directory {
		d := &repb.Directory{}
		for range n {
			d.Files = append(d.Files, &repb.FileNode{Digest: &repb.Digest{}, NodeProperties: &repb.NodeProperties{
				Mtime: &timestamppb.Timestamp{}, UnixMode: &wrapperspb.UInt32Value{}, Properties: []*repb.NodeProperty{{}},
			}})
		}
		return d
	}},
}

func testHash(i int) *repb.Digest {
	h := sha256.Sum256([]byte(fmt.Sprint(i)))
	return &repb.Digest{Hash: hex.EncodeToString(h[:]), SizeBytes: int64(i)}
}

func marshalShape(dir func(int) *repb.Directory, n int) []byte {
	b, err := proto.Marshal(dir(n))
	if err != nil {
		panic(err)
	}
	return b
}

// TestDirectoryWeightCoversItsHeap measures the heap that parsed
// Directories of several shapes hold, and checks that directoryWeight is
// at or above it (so a cache bounded by weight is bounded in memory), and
// not far above it for typical Directories (so the bound is not mostly
// air). The figures it logs (-v) are those in directory_cache.go.
func TestDirectoryWeightCoversItsHeap(t *testing.T) {
	const n = 1000
	for _, s := range weightShapes {
		wire := marshalShape(s.dir, n)
		d := &repb.Directory{}
		if err := proto.Unmarshal(wire, d); err != nil {
			t.Fatal(err)
		}
		weight := float64(directoryWeight(int64(len(wire)), d))
		// About 8 MB held by each shape: a few kilobytes of other
		// goroutines' allocations are noise well below the margins.
		heap := heapPerCopy(max(10, int((8<<20)/weight)), func(int) any {
			d := &repb.Directory{}
			if err := proto.Unmarshal(wire, d); err != nil {
				t.Fatal(err)
			}
			return d
		})
		t.Logf("%-40s wire %4d B/entry  heap %4.0f B/entry  weight %4.0f B/entry", s.name, len(wire)/n, heap/n, weight/n)
		if weight < heap {
			t.Errorf("%s: weight %.0f under the %.0f bytes of heap measured", s.name, weight, heap)
		}
		if s.typical && weight > 1.5*heap {
			t.Errorf("%s: weight %.0f more than 1.5 times the %.0f bytes of heap measured", s.name, weight, heap)
		}
	}

	// What a cache entry holds besides its Directory's entries: the
	// Directory struct, the key, the list element and the map slot. The
	// keys' hashes are strings of their own here, as digests from a
	// parent Directory would be.
	const entries = 20000
	c := newDirectoryCache(1 << 40)
	heap := heapPerCopy(1, func(int) any {
		for i := range entries {
			d, err := digest.New(repb.DigestFunction_SHA256, testHash(i).Hash, 100)
			if err != nil {
				t.Fatal(err)
			}
			c.add("partition", d, &repb.Directory{})
		}
		return c
	})
	per := heap / entries
	t.Logf("%-40s heap %4.0f B/entry  weight %4d B/entry", "cache entry of an empty Directory", per, directoryWeight(0, &repb.Directory{}))
	if float64(directoryOverhead) < per {
		t.Errorf("directoryOverhead %d under the %.0f bytes of heap a cache entry measured", directoryOverhead, per)
	}
}
