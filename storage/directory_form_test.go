package storage_test

import (
	"context"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestOutputDirectoriesAsDirectoryBlobs: an output directory stored as
// Directory blobs (root_directory_digest, Command.output_directory_format
// DIRECTORY_ONLY or TREE_AND_DIRECTORY) is a complete result only while
// every Directory blob and every file below it is in the CAS, whichever
// form the client will read; one with neither form is refused.
func TestOutputDirectoriesAsDirectoryBlobs(t *testing.T) {
	ctx := context.Background()
	type blobs struct {
		file, nested, sub, root, tree, action digest.Digest
	}
	// store writes an output directory "d" (file f, and sub/g, where sub
	// is named twice: its blob is read once) into cas.
	store := func(t *testing.T, cas storage.BlobStore) blobs {
		var b blobs
		b.file = putString(t, cas, "f's contents")
		b.nested = putString(t, cas, "g's contents")
		sub := &repb.Directory{Files: []*repb.FileNode{{Name: "g", Digest: b.nested.Proto()}}}
		b.sub = putProto(t, cas, sub)
		root := &repb.Directory{
			Files:       []*repb.FileNode{{Name: "f", Digest: b.file.Proto()}},
			Directories: []*repb.DirectoryNode{{Name: "sub", Digest: b.sub.Proto()}, {Name: "sub2", Digest: b.sub.Proto()}},
		}
		b.root = putProto(t, cas, root)
		b.tree = putProto(t, cas, &repb.Tree{Root: root, Children: []*repb.Directory{sub}})
		b.action = putString(t, cas, "an action with an output directory")
		return b
	}
	forms := map[string]func(b blobs) *repb.OutputDirectory{
		"directory only": func(b blobs) *repb.OutputDirectory {
			return &repb.OutputDirectory{Path: "d", RootDirectoryDigest: b.root.Proto()}
		},
		"tree and directory": func(b blobs) *repb.OutputDirectory {
			return &repb.OutputDirectory{Path: "d", TreeDigest: b.tree.Proto(), RootDirectoryDigest: b.root.Proto()}
		},
	}
	for form, dir := range forms {
		t.Run(form, func(t *testing.T) {
			ts := startServer(t, storage.ServerOptions{})
			b := store(t, ts.disk)
			result := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{dir(b)}}
			if _, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: b.action.Proto(), ActionResult: result}); err != nil {
				t.Fatalf("a complete result: %v", err)
			}
			got, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: b.action.Proto()})
			if err != nil || got.OutputDirectories[0].GetRootDirectoryDigest().GetHash() != b.root.Hash() {
				t.Fatalf("GetActionResult: %v, %v", got, err)
			}
		})
		for _, gone := range []string{"file", "nested file", "subdirectory", "root directory"} {
			t.Run(form+", missing "+gone, func(t *testing.T) {
				cas := storage.NewMemoryBlobStore()
				b := store(t, cas)
				d := map[string]digest.Digest{"file": b.file, "nested file": b.nested, "subdirectory": b.sub, "root directory": b.root}[gone]
				cas.Delete(d)
				ac := storage.NewMemoryActionCache()
				if err := ac.Put(ctx, "", b.action, &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{dir(b)}}); err != nil {
					t.Fatal(err)
				}
				ts := startServer(t, storage.ServerOptions{CAS: cas, AC: ac})
				_, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: b.action.Proto()})
				wantStatus(t, err, codes.NotFound, d.Hash())
				_, err = ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: b.action.Proto(),
					ActionResult: &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{dir(b)}}})
				wantStatus(t, err, codes.FailedPrecondition, d.Hash())
			})
		}
	}
	t.Run("neither form", func(t *testing.T) {
		cas := storage.NewMemoryBlobStore()
		b := store(t, cas)
		ac := storage.NewMemoryActionCache()
		if err := ac.Put(ctx, "", b.action, &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "d"}}}); err != nil {
			t.Fatal(err)
		}
		ts := startServer(t, storage.ServerOptions{CAS: cas, AC: ac})
		_, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: b.action.Proto()})
		wantStatus(t, err, codes.NotFound, "tree_digest")
	})
}

// TestDirectoryBlobWalkIsBounded: a result whose output directory has
// only Directory blobs is checked by reading each of them, at every
// lookup, so past 10,000 of them it is refused and not stored; with a
// Tree as well, the same directory is checked from the Tree alone.
func TestDirectoryBlobWalkIsBounded(t *testing.T) {
	ctx := context.Background()
	ts := startServer(t, storage.ServerOptions{})
	file := putString(t, ts.disk, "x")
	tree := &repb.Tree{Root: &repb.Directory{}}
	for i := range 10_001 {
		sub := &repb.Directory{Files: []*repb.FileNode{{Name: fmt.Sprintf("f%05d", i), Digest: file.Proto()}}}
		d := putProto(t, ts.disk, sub)
		tree.Root.Directories = append(tree.Root.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%05d", i), Digest: d.Proto()})
		tree.Children = append(tree.Children, sub)
	}
	root := putProto(t, ts.disk, tree.Root)
	action := putString(t, ts.disk, "an action with a wide output directory")
	update := func(dir *repb.OutputDirectory) error {
		_, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(),
			ActionResult: &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{dir}}})
		return err
	}
	wantStatus(t, update(&repb.OutputDirectory{Path: "d", RootDirectoryDigest: root.Proto()}), codes.FailedPrecondition, "more than 10000 Directory blobs", "tree_digest")
	_, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()})
	wantStatus(t, err, codes.NotFound)
	td := putProto(t, ts.disk, tree)
	if err := update(&repb.OutputDirectory{Path: "d", TreeDigest: td.Proto(), RootDirectoryDigest: root.Proto()}); err != nil {
		t.Fatalf("the same directory with a Tree: %v", err)
	}
}
