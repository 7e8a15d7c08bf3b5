package worker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// dirCacheFixture is an inputRootBuilder over a memory CAS, with helpers
// to store Directories and build input roots from them.
type dirCacheFixture struct {
	t    *testing.T
	cas  storage.BlobStore
	b    *inputRootBuilder
	blob digest.Digest // one file every Directory's files name
	n    int           // input roots built, for their directories' names
}

func newDirCacheFixture(t *testing.T, cacheBytes int64, limits InputLimits) *dirCacheFixture {
	f := &dirCacheFixture{t: t, cas: storage.NewMemoryBlobStore()}
	files, err := NewFileCache(FileCacheOptions{Dir: filepath.Join(t.TempDir(), "files"), CAS: f.cas})
	if err != nil {
		t.Fatal(err)
	}
	f.b = &inputRootBuilder{cas: f.cas, files: files, dirs: newDirectoryCache(cacheBytes), parallelism: 16, limits: limits.withDefaults()}
	f.blob = f.putBytes([]byte("the one input file"))
	return f
}

func (f *dirCacheFixture) putBytes(data []byte) digest.Digest {
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := f.cas.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		f.t.Fatal(err)
	}
	return d
}

func (f *dirCacheFixture) put(dir *repb.Directory) digest.Digest {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(dir)
	if err != nil {
		f.t.Fatal(err)
	}
	return f.putBytes(data)
}

// files stores a Directory of n files named after tag (so that each tag
// makes a Directory no other has), each name nameLen bytes long.
func (f *dirCacheFixture) files(tag string, n, nameLen int) digest.Digest {
	dir := &repb.Directory{}
	for i := range n {
		name := fmt.Sprintf("%s-%06d", tag, i)
		name += strings.Repeat("x", max(0, nameLen-len(name)))
		dir.Files = append(dir.Files, &repb.FileNode{Name: name, Digest: f.blob.Proto()})
	}
	return f.put(dir)
}

// nest stores a Directory holding the named subdirectories, in order.
func (f *dirCacheFixture) nest(subs ...any) digest.Digest {
	dir := &repb.Directory{}
	for i := 0; i < len(subs); i += 2 {
		dir.Directories = append(dir.Directories, &repb.DirectoryNode{Name: subs[i].(string), Digest: subs[i+1].(digest.Digest).Proto()})
	}
	return f.put(dir)
}

// build lays out root in a new directory.
func (f *dirCacheFixture) build(root digest.Digest) (int, error) {
	f.n++
	dst := filepath.Join(f.t.TempDir(), fmt.Sprint("root", f.n))
	if err := os.Mkdir(dst, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return f.b.build(context.Background(), repb.DigestFunction_SHA256, root, dst)
}

// cachedWireBytes is the wire size of the Directories the cache holds: a
// floor under their heap, whatever the cache counts them as.
func (f *dirCacheFixture) cachedWireBytes() int64 {
	var sum int64
	for _, k := range f.b.dirs.set.Keys() {
		sum += k.d.SizeBytes()
	}
	return sum
}

func (f *dirCacheFixture) cached(d digest.Digest) bool {
	_, ok := f.b.dirs.set.Peek(dirKey{"", d})
	return ok
}

// TestRefusedInputRootsLeaveNoDirectoriesCached: the Directories of an
// action refused by the input limits hold no memory once it is refused.
// Before, checkExpanded cached every Directory it fetched on the way to
// the refusal, and the cache was bounded by count (100,000): 50 refused
// actions naming a fresh 16 MB Directory each took a worker to 2.9 GB,
// released only by a restart. Each tree here is fresh, its large
// Directory (5,000 files, about 1.4 MB parsed) small enough to be cached
// had its tree passed, with small fresh siblings walked before it.
func TestRefusedInputRootsLeaveNoDirectoriesCached(t *testing.T) {
	for _, tc := range []struct {
		limit  string
		limits InputLimits
		// tree stores a fresh tree whose Directory "big" is past the limit.
		tree func(f *dirCacheFixture, tag string) digest.Digest
	}{{
		limit:  "max_input_files",
		limits: InputLimits{MaxFiles: 1000},
		tree: func(f *dirCacheFixture, tag string) digest.Digest {
			return f.nest("a", f.files(tag+"a", 3, 0), "b", f.files(tag+"b", 3, 0), "mid", f.nest("big", f.files(tag, 5000, 0)))
		},
	}, {
		limit:  "max_input_bytes",
		limits: InputLimits{MaxBytes: 4000 * int64(len("the one input file"))},
		tree: func(f *dirCacheFixture, tag string) digest.Digest {
			return f.nest("a", f.files(tag+"a", 3, 0), "b", f.files(tag+"b", 3, 0), "mid", f.nest("big", f.files(tag, 5000, 0)))
		},
	}, {
		limit:  "max_input_depth",
		limits: InputLimits{MaxDepth: 4},
		tree: func(f *dirCacheFixture, tag string) digest.Digest {
			deep := f.nest("c", f.nest("d", f.nest("e", f.files(tag+"e", 1, 0))))
			return f.nest("a", f.files(tag+"a", 3, 0), "mid", f.nest("big", f.files(tag, 5000, 0), "deep", deep))
		},
	}} {
		t.Run(tc.limit, func(t *testing.T) {
			f := newDirCacheFixture(t, 64<<20, tc.limits)
			// A tree that passes is cached, all of it.
			root := f.nest("a", f.files(tc.limit+"-ok-a", 3, 0), "b", f.files(tc.limit+"-ok-b", 3, 0))
			if n, err := f.build(root); err != nil || n != 6 {
				t.Fatalf("accepted action: %d files, %v", n, err)
			}
			if n := f.b.dirs.set.Len(); n != 3 || !f.cached(root) {
				t.Fatalf("after an accepted action the cache holds %d Directories (its root: %v), want its 3", n, f.cached(root))
			}
			// Refused ones add nothing, and take nothing away.
			for i := range 5 {
				_, err := f.build(tc.tree(f, fmt.Sprintf("%s-%d", tc.limit, i)))
				if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.limit) {
					t.Fatalf("action %d: %v, want INVALID_ARGUMENT naming %s", i, err, tc.limit)
				}
				if n, wire := f.b.dirs.set.Len(), f.cachedWireBytes(); n != 3 || !f.cached(root) {
					t.Fatalf("after %d refused actions the cache holds %d Directories (%d wire bytes; the accepted root: %v), want the accepted action's 3",
						i+1, n, wire, f.cached(root))
				}
			}
		})
	}
}

// TestDirectoryCacheHoldsAtMostItsBytes: many distinct Directories, each
// well under the cache's bound, leave it holding at most its bound, by
// weight and so by wire size too. Before, the bound was a count of
// Directories, whatever their size.
func TestDirectoryCacheHoldsAtMostItsBytes(t *testing.T) {
	const bound = 1 << 20
	f := newDirCacheFixture(t, bound, InputLimits{})
	var last digest.Digest
	for i := range 60 {
		// 100 files with 200-byte names: 28 KB on the wire, about 48 KB
		// parsed; 60 of them are 1.7 MB on the wire.
		last = f.files(fmt.Sprint("dir", i), 100, 200)
		if n, err := f.build(f.nest("d", last)); err != nil || n != 100 {
			t.Fatalf("action %d: %d files, %v", i, n, err)
		}
		if held, wire := f.b.dirs.set.Size(), f.cachedWireBytes(); held > bound || wire > bound {
			t.Fatalf("after %d actions the cache holds %d (%d wire bytes), past its bound of %d", i+1, held, wire, bound)
		}
	}
	if n := f.b.dirs.set.Len(); n < 20 || !f.cached(last) {
		t.Fatalf("the cache holds %d Directories (the newest: %v): it should hold the newest dozen and more", n, f.cached(last))
	}
}

// TestDirectoryOverTheEntryCapIsServedNotCached: a Directory heavier than
// the cache's per-entry cap is laid out as any other, but not cached, so
// that naming it in every build does not flush what the cache holds.
func TestDirectoryOverTheEntryCapIsServedNotCached(t *testing.T) {
	f := newDirCacheFixture(t, 1<<20, InputLimits{})
	small := f.files("small", 10, 0)
	big := f.files("big", 300, 200) // 84 KB on the wire, over a sixteenth of 1 MiB
	root := f.nest("big", big, "small", small)
	for i := range 2 {
		if n, err := f.build(root); err != nil || n != 310 {
			t.Fatalf("build %d: %d files, %v", i, n, err)
		}
		if f.cached(big) || !f.cached(small) || !f.cached(root) {
			t.Fatalf("build %d: cached: big %v, small %v, root %v; want only small and root", i, f.cached(big), f.cached(small), f.cached(root))
		}
	}
}
