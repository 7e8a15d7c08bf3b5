package worker_test

import (
	"context"
	"maps"
	"path"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestOutputDirectoryFormats: an output directory is stored in the forms
// Command.output_directory_format asks for, and always as a Tree (for
// DIRECTORY_ONLY too, a superset the specification allows). The Tree
// lists each distinct directory once, parents first, in the record
// encoding is_topologically_sorted promises; the Directory blobs
// (DIRECTORY_ONLY and TREE_AND_DIRECTORY) rebuild the same files from
// root_directory_digest, the Tree's root; and the cached result is
// complete.
func TestOutputDirectoryFormats(t *testing.T) {
	script := `mkdir -p out/d/x/t out/d/y/t out/d/z && echo s > out/d/x/t/s && echo s > out/d/y/t/s &&
echo a > out/d/a && echo z > out/d/z/z`
	want := map[string]string{"a": "a\n", "x/t/s": "s\n", "y/t/s": "s\n", "z/z": "z\n"}
	for _, format := range []repb.Command_OutputDirectoryFormat{repb.Command_TREE_ONLY, repb.Command_DIRECTORY_ONLY, repb.Command_TREE_AND_DIRECTORY, 42} {
		t.Run(format.String(), func(t *testing.T) {
			h := newHarness(t)
			cmd := sh(script, "out/d")
			cmd.OutputDirectoryFormat = format
			a := h.action(cmd, &repb.Directory{}, false)
			res := ok(t, h.w.Execute(context.Background(), a))
			if len(res.OutputDirectories) != 1 {
				t.Fatalf("output directories %v", res.OutputDirectories)
			}
			od := res.OutputDirectories[0]
			dirs := format == repb.Command_DIRECTORY_ONLY || format == repb.Command_TREE_AND_DIRECTORY // 42 is unknown: TREE_ONLY
			if od.TreeDigest == nil || !od.IsTopologicallySorted || (od.RootDirectoryDigest != nil) != dirs {
				t.Fatalf("output directory %v: want a sorted tree, and directory blobs %v", od, dirs)
			}
			root := checkSortedTree(t, h.read(od.TreeDigest), 3)
			if dirs && digest.FromBytes(sha256, root).Hash() != od.RootDirectoryDigest.Hash {
				t.Errorf("root_directory_digest %v is not the Tree's root", od.RootDirectoryDigest)
			}
			if dirs {
				got := map[string]string{}
				h.walkDirectory(od.RootDirectoryDigest, "", got)
				if !maps.Equal(got, want) {
					t.Errorf("files rebuilt from the Directory blobs: %v, want %v", got, want)
				}
			}
			cached, err := h.ac.Get(context.Background(), "main", actionDigest(a))
			if err != nil {
				t.Fatalf("result not cached: %v", err)
			}
			if err := storage.CheckComplete(context.Background(), h.cas, sha256, cached); err != nil {
				t.Errorf("cached result incomplete: %v", err)
			}
		})
	}
}

// checkSortedTree parses an encoded Tree record by record: one-byte tags,
// the root first (0x0a), then n distinct children (0x12), each referenced
// only by records before it. It returns the root's encoding.
func checkSortedTree(t *testing.T, b []byte, n int) []byte {
	t.Helper()
	var records [][]byte
	for len(b) > 0 {
		want := byte(0x12)
		if len(records) == 0 {
			want = 0x0a
		}
		if b[0] != want {
			t.Fatalf("record %d has tag %#x, want %#x", len(records), b[0], want)
		}
		v, m := protowire.ConsumeBytes(b[1:])
		if m < 0 {
			t.Fatalf("record %d: %v", len(records), protowire.ParseError(m))
		}
		records = append(records, v)
		b = b[1+m:]
	}
	if len(records) != n+1 {
		t.Fatalf("%d children, want %d distinct", len(records)-1, n)
	}
	at := map[string]int{}
	for i, r := range records[1:] {
		h := digest.FromBytes(sha256, r).Hash()
		if _, dup := at[h]; dup {
			t.Fatalf("child %d stored twice", i+1)
		}
		at[h] = i + 1
	}
	for i, r := range records {
		d := &repb.Directory{}
		if err := proto.Unmarshal(r, d); err != nil {
			t.Fatal(err)
		}
		for _, sub := range d.Directories {
			if j, ok := at[sub.Digest.Hash]; !ok || j <= i {
				t.Errorf("record %d names %s, which is at %d (absent: %v): not parents first", i, sub.Name, j, !ok)
			}
		}
	}
	return records[0]
}

// walkDirectory reads the Directory blob d and those below it from the
// CAS, putting each file's contents in files by its path.
func (h *harness) walkDirectory(d *repb.Digest, dir string, files map[string]string) {
	m := &repb.Directory{}
	if err := proto.Unmarshal(h.read(d), m); err != nil {
		h.t.Fatal(err)
	}
	for _, f := range m.Files {
		files[path.Join(dir, f.Name)] = string(h.read(f.Digest))
	}
	for _, sub := range m.Directories {
		h.walkDirectory(sub.Digest, path.Join(dir, sub.Name), files)
	}
}
