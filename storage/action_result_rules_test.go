package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// refusedAndNotServed checks one ActionResult against a server on
// loopback: UpdateActionResult refuses it with INVALID_ARGUMENT naming
// field and writes nothing; the same result written straight to the
// store (as an older version may have) is a miss for GetActionResult and
// for the scheduler's lookup (CheckComplete).
func refusedAndNotServed(t *testing.T, ts *testServer, fn repb.DigestFunction_Value, action digest.Digest, result *repb.ActionResult, field string) {
	t.Helper()
	ctx := context.Background()
	_, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), DigestFunction: fn, ActionResult: result})
	wantStatus(t, err, codes.InvalidArgument, field)
	_, err = ts.ac.Get(ctx, "", action)
	wantStatus(t, err, codes.NotFound)
	if err := ts.ac.Put(ctx, "", action, result); err != nil {
		t.Fatal(err)
	}
	_, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto(), DigestFunction: fn})
	wantStatus(t, err, codes.NotFound, field)
	if err := storage.CheckComplete(ctx, ts.disk, action.Function(), result); err == nil {
		t.Fatal("CheckComplete accepts the result: Execute would serve it from the cache")
	}
}

// acceptedAndServed checks that UpdateActionResult accepts result for
// action and GetActionResult then serves it: the passing counterpart of
// refusedAndNotServed, so each rule test shows a lawful result still works.
// what names the case in a failure.
func acceptedAndServed(t *testing.T, ts *testServer, action digest.Digest, result *repb.ActionResult, what string) {
	t.Helper()
	ctx := context.Background()
	if _, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: result}); err != nil {
		t.Fatalf("%s: UpdateActionResult: %v", what, err)
	}
	if _, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()}); err != nil {
		t.Fatalf("%s: GetActionResult: %v", what, err)
	}
}

// TestTreeRootMustMatchRootDirectoryDigest: REv2 says that when an
// OutputDirectory has both, root_directory_digest MUST be the digest of
// the root directory in its Tree. A result where they differ would give a
// client reading the Tree other outputs than one reading the Directory
// blobs; it is refused, and not served if stored.
func TestTreeRootMustMatchRootDirectoryDigest(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{AC: storage.NewMemoryActionCache()})
	a := putString(t, ts.disk, "content of a")
	inTree := &repb.Directory{Files: []*repb.FileNode{{Name: "x", Digest: a.Proto()}}}
	putProto(t, ts.disk, inTree)
	tree := putProto(t, ts.disk, &repb.Tree{Root: inTree})
	other := putProto(t, ts.disk, &repb.Directory{Files: []*repb.FileNode{{Name: "y", Digest: a.Proto()}}})
	action := putString(t, ts.disk, "an action whose tree and root differ")
	mismatch := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: tree.Proto(), RootDirectoryDigest: other.Proto()}}}
	refusedAndNotServed(t, ts, repb.DigestFunction_UNKNOWN, action, mismatch, "action_result.output_directories[0].root_directory_digest")

	// The Tree's own root is accepted and served.
	root := putProto(t, ts.disk, inTree)
	match := putString(t, ts.disk, "an action whose tree and root agree")
	result := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: tree.Proto(), RootDirectoryDigest: root.Proto()}}}
	acceptedAndServed(t, ts, match, result, "a matching tree and root")
}

// TestTreeHoldsEveryDirectoryItNames: REv2's Tree.children holds every
// directory below the root, and clients (Bazel) look each DirectoryNode
// up among them. A Tree naming a directory it lacks (even one in the CAS),
// or naming one by a malformed digest, is refused, and not served if
// stored. Before, such results were accepted and served as hits no client
// could materialise.
func TestTreeHoldsEveryDirectoryItNames(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{AC: storage.NewMemoryActionCache()})
	a := putString(t, ts.disk, "content of a")
	child := &repb.Directory{Files: []*repb.FileNode{{Name: "x", Digest: a.Proto()}}}
	childD := putProto(t, ts.disk, child) // in the CAS, not always in the Tree
	grandchild := &repb.Directory{Files: []*repb.FileNode{{Name: "y", Digest: a.Proto()}}}
	withGrandchild := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "g", Digest: digestOf(grandchild).Proto()}}}
	naming := func(d *repb.Digest) *repb.Directory {
		return &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: d}}}
	}
	for name, tree := range map[string]*repb.Tree{
		"child in the CAS only":     {Root: naming(childD.Proto())},
		"child nowhere":             {Root: naming(digestOf(&repb.Directory{Files: []*repb.FileNode{{Name: "z", Digest: a.Proto()}}}).Proto())},
		"malformed child digest":    {Root: naming(&repb.Digest{Hash: "zz", SizeBytes: -1}), Children: []*repb.Directory{child}},
		"grandchild missing":        {Root: naming(digestOf(withGrandchild).Proto()), Children: []*repb.Directory{withGrandchild}},
		"other child than it names": {Root: naming(childD.Proto()), Children: []*repb.Directory{grandchild}},
	} {
		t.Run(name, func(t *testing.T) {
			td := putProto(t, ts.disk, tree)
			action := putString(t, ts.disk, "an action whose tree lacks a directory: "+name)
			result := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: td.Proto()}}}
			refusedAndNotServed(t, ts, repb.DigestFunction_UNKNOWN, action, result, `action_result.output_directories[0].tree_digest: Tree.`)
		})
	}

	// A complete Tree is accepted and served.
	td := putProto(t, ts.disk, &repb.Tree{Root: naming(digestOf(withGrandchild).Proto()), Children: []*repb.Directory{withGrandchild, grandchild}})
	action := putString(t, ts.disk, "an action whose tree is complete")
	result := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: td.Proto()}}}
	acceptedAndServed(t, ts, action, result, "a complete tree")
}

// TestOutputSymlinkTargetsAreRelative: Capabilities advertises
// symlink_absolute_path_strategy DISALLOWED, so a result with an absolute
// or empty symlink target, as an output symlink or inside an output
// directory (either form), is refused, and one stored anyway is a miss.
func TestOutputSymlinkTargetsAreRelative(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{AC: storage.NewMemoryActionCache()})
	link := func(target string) []*repb.OutputSymlink {
		return []*repb.OutputSymlink{{Path: "out/l", Target: target}}
	}
	withLink := func(target string) *repb.Directory {
		return &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: target}}}
	}
	treeWith := func(target string) *repb.ActionResult {
		sub := withLink(target)
		putProto(t, ts.disk, sub)
		tree := putProto(t, ts.disk, &repb.Tree{Root: &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "s", Digest: digestOf(sub).Proto()}}}, Children: []*repb.Directory{sub}})
		return &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: tree.Proto()}}}
	}
	walkedWith := func(target string) *repb.ActionResult {
		root := putProto(t, ts.disk, withLink(target))
		return &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", RootDirectoryDigest: root.Proto()}}}
	}
	for i, tc := range []struct {
		name   string
		result *repb.ActionResult
		field  string
	}{
		{"absolute output symlink", &repb.ActionResult{OutputSymlinks: link("/etc/passwd")}, "action_result.output_symlinks[0].target"},
		{"empty output symlink", &repb.ActionResult{OutputSymlinks: link("")}, "action_result.output_symlinks[0].target"},
		{"absolute output file symlink", &repb.ActionResult{OutputFileSymlinks: link("/etc/passwd")}, "action_result.output_file_symlinks[0].target"},
		{"empty output directory symlink", &repb.ActionResult{OutputDirectorySymlinks: link("")}, "action_result.output_directory_symlinks[0].target"},
		{"absolute output directory symlink", &repb.ActionResult{OutputDirectorySymlinks: link("/etc")}, "action_result.output_directory_symlinks[0].target"},
		{"absolute symlink in a Tree", treeWith("/etc"), "action_result.output_directories[0].tree_digest"},
		{"empty symlink in a Tree", treeWith(""), "action_result.output_directories[0].tree_digest"},
		{"absolute symlink in Directory blobs", walkedWith("/etc/shadow"), "action_result.output_directories[0].root_directory_digest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			action := putString(t, ts.disk, fmt.Sprintf("symlink action %d", i))
			refusedAndNotServed(t, ts, repb.DigestFunction_UNKNOWN, action, tc.result, tc.field)
		})
	}
	// Relative targets, climbing ones included (only a string, never
	// followed here), are accepted in every place.
	action := putString(t, ts.disk, "a relative symlink action")
	ok := treeWith("../x")
	ok.OutputSymlinks = link("a/b")
	ok.OutputDirectorySymlinks = []*repb.OutputSymlink{{Path: "out/d", Target: "../up"}}
	acceptedAndServed(t, ts, action, ok, "relative targets")
}

// TestActionResultDigestFunctionIsTheActions: with digest_function unset,
// the function is inferred from the action digest (REv2), and every digest
// of the result is held to it: a SHA-256 action with a SHA-1 output, or a
// SHA-1 file inside its output Tree, is refused and not served, while a
// SHA-1 action with SHA-1 outputs is served.
func TestActionResultDigestFunctionIsTheActions(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{AC: storage.NewMemoryActionCache()})
	sha1Out := putSHA1(t, ts.disk, "a SHA-1 output")

	action := putString(t, ts.disk, "a SHA-256 action")
	mixed := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: sha1Out.Proto()}}}
	refusedAndNotServed(t, ts, repb.DigestFunction_UNKNOWN, action, mixed, "action_result.output_files[0].digest")

	treeAction := putString(t, ts.disk, "a SHA-256 action with a tree")
	tree := putProto(t, ts.disk, &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: sha1Out.Proto()}}}})
	inTree := &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "d", TreeDigest: tree.Proto()}}}
	refusedAndNotServed(t, ts, repb.DigestFunction_UNKNOWN, treeAction, inTree, "action_result.output_directories[0]")

	sha1Action := putSHA1(t, ts.disk, "a SHA-1 action")
	same := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: sha1Out.Proto()}}}
	acceptedAndServed(t, ts, sha1Action, same, "SHA-1 action, SHA-1 output, function unset")
}

// TestGetActionResultInliningStaysUnderTheClientLimit: gRPC's Go and Java
// clients receive at most 4 MiB by default, and the spec says a server
// MUST NOT inline what would make the response exceed message size
// limits. A result of 3.3 MB whose 900 KiB stdout is asked for inline is
// served without it, to a client that kept the default limit.
func TestGetActionResultInliningStaysUnderTheClientLimit(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{AC: storage.NewMemoryActionCache(), MaxInlineBytes: 8 << 20})
	ctx := context.Background()
	stdout := putString(t, ts.disk, string(bytes.Repeat([]byte("z"), 900<<10)))
	result := &repb.ActionResult{StdoutDigest: stdout.Proto()}
	for i := range 38000 {
		result.OutputFiles = append(result.OutputFiles, &repb.OutputFile{Path: fmt.Sprintf("out/file-%06d.o", i), Digest: sha("").Proto()})
	}
	action := putString(t, ts.disk, "an action with many outputs")
	if err := ts.ac.Put(ctx, "", action, result); err != nil {
		t.Fatal(err)
	}
	const clientLimit = 4 << 20
	got, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto(), InlineStdout: true}, grpc.MaxCallRecvMsgSize(clientLimit))
	if err != nil {
		t.Fatalf("GetActionResult with inline_stdout, 4 MiB client limit: %v", err)
	}
	if size := proto.Size(got); size > clientLimit || len(got.StdoutRaw) != 0 {
		t.Fatalf("reply of %d bytes, %d of stdout inlined; want stdout left out", size, len(got.StdoutRaw))
	}
	// A small result still gets the same stdout inlined.
	small := putString(t, ts.disk, "an action with a small result")
	if err := ts.ac.Put(ctx, "", small, &repb.ActionResult{StdoutDigest: stdout.Proto()}); err != nil {
		t.Fatal(err)
	}
	got, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: small.Proto(), InlineStdout: true}, grpc.MaxCallRecvMsgSize(clientLimit))
	if err != nil || len(got.StdoutRaw) != 900<<10 {
		t.Fatalf("small result: %d bytes of stdout inlined, %v", len(got.GetStdoutRaw()), err)
	}
}

// putSHA1 stores data under its SHA-1 digest.
func putSHA1(t *testing.T, s storage.BlobStore, data string) digest.Digest {
	t.Helper()
	d := digest.FromBytes(repb.DigestFunction_SHA1, []byte(data))
	if err := s.Put(context.Background(), d, bytes.NewReader([]byte(data))); err != nil {
		t.Fatal(err)
	}
	return d
}

// digestOf is the SHA-256 digest of m's encoding.
func digestOf(m proto.Message) digest.Digest {
	b, _ := proto.Marshal(m)
	return digest.FromBytes(repb.DigestFunction_SHA256, b)
}
