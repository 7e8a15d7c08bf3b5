package storage_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestGetTreeResumesAtItsDirectoryAfterAnEviction: a directory of an
// earlier page evicted before the next page is asked for does not make
// that page leave out one that is present. The page token names the
// directory it resumes at; before, it was a position alone, every later
// directory moved a place back, and the first of the next page was lost.
func TestGetTreeResumesAtItsDirectoryAfterAnEviction(t *testing.T) {
	cas := storage.NewMemoryBlobStore()
	ts := startServer(t, storage.ServerOptions{CAS: cas})
	ctx := context.Background()
	root := &repb.Directory{}
	var subs []digest.Digest
	for _, name := range []string{"d0", "d1", "d2", "d3", "d4"} {
		d := putProto(t, cas, &repb.Directory{Files: []*repb.FileNode{{Name: name + ".txt", Digest: sha(name).Proto()}}})
		subs = append(subs, d)
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: name, Digest: d.Proto()})
	}
	rd := putProto(t, cas, root)
	first, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: rd.Proto(), PageSize: 2})
	if err != nil || len(first[0].Directories) != 2 {
		t.Fatalf("first page: %v, %v", first, err)
	}
	cas.Delete(subs[0]) // d0, on the first page, is evicted
	rest, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: rd.Proto(), PageSize: 2, PageToken: first[0].NextPageToken})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rest {
		for _, dir := range r.Directories {
			got = append(got, dir.Files[0].Name)
		}
	}
	want := []string{"d1.txt", "d2.txt", "d3.txt", "d4.txt"}
	if len(got) != len(want) {
		t.Fatalf("the pages after the token hold %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("the pages after the token hold %v, want %v", got, want)
		}
	}
}

// TestGetTreeResumesWholeWhenItsDirectoryIsCutOff: when an ancestor of
// the token's directory is evicted, the walk no longer reaches that
// directory and cannot tell where the client stopped. The rest is then
// the whole present tree again, never an empty last page: before, a
// client resuming root→{a→c, b→e} after page [root a b] with a evicted
// got nothing, and took the tree to be complete without e.
func TestGetTreeResumesWholeWhenItsDirectoryIsCutOff(t *testing.T) {
	cas := storage.NewMemoryBlobStore()
	ts := startServer(t, storage.ServerOptions{CAS: cas})
	ctx := context.Background()
	leaf := func(name string) digest.Digest {
		return putProto(t, cas, &repb.Directory{Files: []*repb.FileNode{{Name: name, Digest: sha(name).Proto()}}})
	}
	c, e := leaf("c"), leaf("e")
	a := putProto(t, cas, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "c", Digest: c.Proto()}}})
	b := putProto(t, cas, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "e", Digest: e.Proto()}}})
	rd := putProto(t, cas, &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: a.Proto()}, {Name: "b", Digest: b.Proto()}}})
	first, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: rd.Proto(), PageSize: 3})
	if err != nil || len(first[0].Directories) != 3 || first[0].NextPageToken == "" {
		t.Fatalf("first page: %v, %v", first, err)
	}
	cas.Delete(a) // on the first page, and the only way to c
	rest, err := recvTree(ctx, ts, &repb.GetTreeRequest{RootDigest: rd.Proto(), PageSize: 3, PageToken: first[0].NextPageToken})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, r := range rest {
		for _, dir := range r.Directories {
			b, err := proto.Marshal(dir)
			if err != nil {
				t.Fatal(err)
			}
			got[digest.FromBytes(repb.DigestFunction_SHA256, b).String()] = true
		}
	}
	for name, d := range map[string]digest.Digest{"root": rd, "b": b, "e": e} {
		if !got[d.String()] {
			t.Errorf("the pages after the token leave out %s, which is present: got %d directories", name, len(got))
		}
	}
}
