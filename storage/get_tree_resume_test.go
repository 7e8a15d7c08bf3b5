package storage_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

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
