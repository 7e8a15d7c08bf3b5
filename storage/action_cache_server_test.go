package storage_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

func TestActionCacheCompletenessAndInlining(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{MaxInlineBytes: 20})
	ctx := context.Background()
	out := putString(t, ts.disk, "output file")    // 11 bytes
	stdout := putString(t, ts.disk, "stdout!")     // 7 bytes
	stderr := putString(t, ts.disk, "stderr text") // 11 bytes: over the budget left
	dirFile := putString(t, ts.disk, "in a dir")
	tree := putProto(t, ts.disk, &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: dirFile.Proto()}}}})
	action := putString(t, ts.disk, "action")
	result := &repb.ActionResult{
		OutputFiles:       []*repb.OutputFile{{Path: "out/a", Digest: out.Proto()}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "out/d", TreeDigest: tree.Proto()}},
		StdoutDigest:      stdout.Proto(),
		StderrDigest:      stderr.Proto(),
	}
	if _, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{InstanceName: "i", ActionDigest: action.Proto(), ActionResult: result}); err != nil {
		t.Fatal(err)
	}
	got, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{
		InstanceName: "i", ActionDigest: action.Proto(),
		InlineStdout: true, InlineStderr: true, InlineOutputFiles: []string{"out/a"},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Budget 20: stdout (7) fits, stderr (11) fits (18), the file (11) does not.
	if string(got.StdoutRaw) != "stdout!" || string(got.StderrRaw) != "stderr text" || len(got.OutputFiles[0].Contents) != 0 {
		t.Fatalf("inlined stdout %q stderr %q file %q", got.StdoutRaw, got.StderrRaw, got.OutputFiles[0].Contents)
	}
	got, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "i", ActionDigest: action.Proto(), InlineOutputFiles: []string{"out/a"}})
	if err != nil || string(got.OutputFiles[0].Contents) != "output file" || got.StdoutRaw != nil {
		t.Fatalf("inline output file only: %v, %v", got, err)
	}
	// Another instance does not see the entry.
	_, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{InstanceName: "other", ActionDigest: action.Proto()})
	wantStatus(t, err, codes.NotFound)

	// Each referenced blob, once gone, makes the entry NOT_FOUND.
	for name, gone := range map[string]digest.Digest{"output file": out, "stdout": stdout, "file in tree": dirFile, "tree": tree} {
		t.Run("missing "+name, func(t *testing.T) {
			cas := storage.NewMemoryBlobStore()
			for _, x := range []string{"output file", "stdout!", "stderr text", "in a dir"} {
				putString(t, cas, x)
			}
			putProto(t, cas, &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: dirFile.Proto()}}}})
			cas.Delete(gone)
			ac := storage.NewMemoryActionCache()
			if err := ac.Put(ctx, "", action, result); err != nil {
				t.Fatal(err)
			}
			ts := startServer(t, storage.ServerOptions{CAS: cas, AC: ac})
			_, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()})
			wantStatus(t, err, codes.NotFound, "incomplete")
		})
	}
}

func TestUpdateActionResultValidates(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	action := sha("action")
	for name, tc := range map[string]struct {
		req  *repb.UpdateActionResultRequest
		want string
	}{
		"bad action digest": {&repb.UpdateActionResultRequest{ActionDigest: &repb.Digest{Hash: "xyz"}, ActionResult: &repb.ActionResult{}}, "action_digest"},
		"no result":         {&repb.UpdateActionResultRequest{ActionDigest: action.Proto()}, "action_result"},
		"bad output digest": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{Path: "a", Digest: &repb.Digest{Hash: "short", SizeBytes: 1}}}}}, "output_files[0].digest"},
		"empty output path": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{Digest: sha("a").Proto()}}}}, "output_files[0].path"},
		"bad tree digest": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputDirectories: []*repb.OutputDirectory{{Path: "d"}}}}, "output_directories[0].tree_digest"},
		"bad root directory digest": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputDirectories: []*repb.OutputDirectory{{Path: "d", RootDirectoryDigest: &repb.Digest{Hash: "short"}}}}}, "output_directories[0].root_directory_digest"},
		"absolute output file": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{Path: "/etc/passwd", Digest: sha("a").Proto()}}}}, "output_files[0].path"},
		"output file with a trailing slash": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{Path: "a/", Digest: sha("a").Proto()}}}}, "output_files[0].path"},
		"output file with an empty component": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{Path: "a//b", Digest: sha("a").Proto()}}}}, "output_files[0].path"},
		"absolute output directory": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputDirectories: []*repb.OutputDirectory{{Path: "/abs", TreeDigest: sha("a").Proto()}}}}, "output_directories[0].path"},
		"empty output symlink path": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputSymlinks: []*repb.OutputSymlink{{Target: "x"}}}}, "output_symlinks[0].path"},
		"absolute output file symlink": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFileSymlinks: []*repb.OutputSymlink{{Path: "/l", Target: "x"}}}}, "output_file_symlinks[0].path"},
		"output directory symlink with a NUL": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputDirectorySymlinks: []*repb.OutputSymlink{{Path: "l\x00", Target: "x"}}}}, "output_directory_symlinks[0].path"},
		"output file listed twice": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{Path: "a", Digest: sha("a").Proto()}, {Path: "a", Digest: sha("b").Proto()}}}}, "output_files[1].path: \"a\" is also action_result.output_files[0]"},
		"output file that is also an output directory": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles:       []*repb.OutputFile{{Path: "a", Digest: sha("a").Proto()}},
			OutputDirectories: []*repb.OutputDirectory{{Path: "a", TreeDigest: sha("t").Proto()}}}}, "output_directories[0].path"},
		"output below an output file": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputFiles: []*repb.OutputFile{{Path: "a", Digest: sha("a").Proto()}, {Path: "a/b/c", Digest: sha("b").Proto()}}}}, "output_files[1].path: \"a/b/c\" is below action_result.output_files[0]"},
		"symlink listed twice with two targets": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			OutputSymlinks:     []*repb.OutputSymlink{{Path: "l", Target: "x"}},
			OutputFileSymlinks: []*repb.OutputSymlink{{Path: "l", Target: "y"}}}}, "output_file_symlinks[0].path"},
		"bad stderr digest": {&repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: &repb.ActionResult{
			StderrDigest: &repb.Digest{Hash: sha("a").Hash(), SizeBytes: -4}}}, "stderr_digest"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ts.acc.UpdateActionResult(ctx, tc.req)
			wantStatus(t, err, codes.InvalidArgument, tc.want)
			_, err = ts.ac.Get(ctx, "", action)
			wantStatus(t, err, codes.NotFound)
		})
	}
}

// TestUpdateActionResultTakesWhatServersWrite: what REv2 servers put in
// results is not taken for a conflict: a symlink listed both in
// output_symlinks and in the 2.0 list of its kind (with the same target),
// an output file below an output directory, and one below an output
// symlink (Paddock's worker collects outputs a command left below a
// symlink to a directory of its input root).
func TestUpdateActionResultTakesWhatServersWrite(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	out := putString(t, ts.disk, "an output")
	action := putString(t, ts.disk, "an action with many kinds of outputs")
	tree := putProto(t, ts.disk, &repb.Tree{Root: &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: out.Proto()}}}})
	link := &repb.OutputSymlink{Path: "l", Target: "d"}
	r := &repb.ActionResult{
		OutputFiles:        []*repb.OutputFile{{Path: "d/f", Digest: out.Proto()}, {Path: "l/x", Digest: out.Proto()}},
		OutputDirectories:  []*repb.OutputDirectory{{Path: "d", TreeDigest: tree.Proto()}},
		OutputSymlinks:     []*repb.OutputSymlink{link},
		OutputFileSymlinks: []*repb.OutputSymlink{link},
	}
	if _, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: r}); err != nil {
		t.Fatalf("UpdateActionResult: %v", err)
	}
	got, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto()})
	if err != nil || len(got.OutputFiles) != 2 || len(got.OutputSymlinks) != 1 || len(got.OutputFileSymlinks) != 1 {
		t.Fatalf("GetActionResult = %v, %v; want the result as written", got, err)
	}
}

// TestUpdateActionResultNeedsStoredBlobs: a result for an Action the CAS
// does not hold, or one naming outputs it does not hold, is refused with
// FAILED_PRECONDITION (REv2), and nothing is written.
func TestUpdateActionResultNeedsStoredBlobs(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	out := putString(t, ts.disk, "an output")
	stored := putString(t, ts.disk, "a stored action")
	absent := sha("an action nobody uploaded")
	good := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: out.Proto()}}}
	_, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: absent.Proto(), ActionResult: good})
	wantStatus(t, err, codes.FailedPrecondition, "action_digest", absent.String())
	if len(status.Convert(err).Details()) != 1 {
		t.Errorf("FAILED_PRECONDITION without its PreconditionFailure: %v", status.Convert(err).Details())
	}
	dangling := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "o", Digest: sha("never stored").Proto()}}}
	_, err = ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: stored.Proto(), ActionResult: dangling})
	wantStatus(t, err, codes.FailedPrecondition, "action_result", "missing blob")
	for _, d := range []digest.Digest{absent, stored} {
		_, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: d.Proto()})
		wantStatus(t, err, codes.NotFound)
	}
	if _, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: stored.Proto(), ActionResult: good}); err != nil {
		t.Fatalf("a complete result for a stored action: %v", err)
	}
}

// TestGetActionResultInliningStaysUnderTheSendLimit: the spec says a
// server MUST NOT inline what would make the response exceed message size
// limits. A stored result just under the server's send limit (36 MiB with
// the default options; as a worker can write one) is served with small
// contents inlined and a 1 MiB stdout left out, instead of failing the
// whole call with RESOURCE_EXHAUSTED.
func TestGetActionResultInliningStaysUnderTheSendLimit(t *testing.T) {
	// A memory action cache: the disk one bounds a result to 16 MiB.
	ts := startServer(t, storage.ServerOptions{AC: storage.NewMemoryActionCache()})
	ctx := context.Background()
	// ServerOptions.maxSendBytes with the default options.
	const sendLimit = 4 * (2*storage.DefaultMaxBatchTotalSizeBytes + 1<<20)
	stdout := putString(t, ts.disk, strings.Repeat("s", 1<<20-10)) // within MaxInlineBytes
	stderr := putString(t, ts.disk, "a short stderr")
	empty := sha("").Proto()
	result := &repb.ActionResult{StdoutDigest: stdout.Proto(), StderrDigest: stderr.Proto()}
	// Filled to just under the limit, the size counted as it grows (one
	// proto.Size per entry would be quadratic).
	size := proto.Size(result)
	for i := 0; size < sendLimit-512<<10; i++ {
		f := &repb.OutputFile{Path: fmt.Sprintf("d/%06d-%s", i, strings.Repeat("p", 1000)), Digest: empty}
		result.OutputFiles = append(result.OutputFiles, f)
		size += protowire.SizeTag(1) + protowire.SizeBytes(proto.Size(f))
	}
	if got := proto.Size(result); got != size {
		t.Fatalf("result is %d bytes, counted %d", got, size)
	}
	action := putString(t, ts.disk, "a large result's action")
	if err := ts.ac.Put(ctx, "", action, result); err != nil {
		t.Fatal(err)
	}
	got, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: action.Proto(), InlineStdout: true, InlineStderr: true})
	if err != nil {
		t.Fatalf("GetActionResult with inlining asked: %v", err)
	}
	if len(got.StdoutRaw) != 0 || string(got.StderrRaw) != "a short stderr" || len(got.OutputFiles) != len(result.OutputFiles) {
		t.Fatalf("stdout_raw %d bytes (want none: it does not fit), stderr_raw %q, %d output files", len(got.StdoutRaw), got.StderrRaw, len(got.OutputFiles))
	}
	// A smaller result gets the same stdout inlined.
	small := putString(t, ts.disk, "a small result's action")
	if err := ts.ac.Put(ctx, "", small, &repb.ActionResult{StdoutDigest: stdout.Proto()}); err != nil {
		t.Fatal(err)
	}
	got, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: small.Proto(), InlineStdout: true})
	if err != nil || len(got.StdoutRaw) != 1<<20-10 {
		t.Fatalf("small result: %d bytes of stdout inlined, %v", len(got.GetStdoutRaw()), err)
	}
}

// TestStoredInlineBytesAreNotServed: contents a client sends inlined in
// UpdateActionResult (the spec says it SHOULD NOT) are not kept, and a
// stored result's own inlined bytes are never served: what comes back is
// read from the CAS by digest, and only when asked for. Otherwise a writer
// could serve bytes that differ from the digests beside them.
func TestStoredInlineBytesAreNotServed(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	real := putString(t, ts.disk, "the real stdout")
	action := putString(t, ts.disk, "an action")
	lying := &repb.ActionResult{
		StdoutDigest: real.Proto(), StdoutRaw: []byte("NOT THE BLOB"),
		StderrDigest: real.Proto(), StderrRaw: []byte("NOT THE BLOB"),
		OutputFiles: []*repb.OutputFile{{Path: "out", Digest: real.Proto(), Contents: []byte("NOT THE BLOB")}},
	}
	stored, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: action.Proto(), ActionResult: lying})
	if err != nil {
		t.Fatal(err)
	}
	if stored.StdoutRaw != nil || stored.StderrRaw != nil || stored.OutputFiles[0].Contents != nil {
		t.Errorf("UpdateActionResult answered with the inlined bytes it was sent: %v", stored)
	}
	// Written straight to the store too, as a worker writes.
	direct := putString(t, ts.disk, "an action a worker ran")
	if err := ts.ac.Put(ctx, "", direct, lying); err != nil {
		t.Fatal(err)
	}
	for _, a := range []digest.Digest{action, direct} {
		got, err := ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: a.Proto()})
		if err != nil {
			t.Fatal(err)
		}
		if got.StdoutRaw != nil || got.StderrRaw != nil || got.OutputFiles[0].Contents != nil {
			t.Errorf("%s: inlined bytes served without being asked for: %v", a, got)
		}
		got, err = ts.acc.GetActionResult(ctx, &repb.GetActionResultRequest{ActionDigest: a.Proto(), InlineStdout: true, InlineStderr: true, InlineOutputFiles: []string{"out"}})
		if err != nil {
			t.Fatal(err)
		}
		if string(got.StdoutRaw) != "the real stdout" || string(got.StderrRaw) != "the real stdout" || string(got.OutputFiles[0].Contents) != "the real stdout" {
			t.Errorf("%s: inlined %q, %q, %q; want the CAS's bytes", a, got.StdoutRaw, got.StderrRaw, got.OutputFiles[0].Contents)
		}
	}
}

// TestUpdateActionResultOutputPathsStayInside: an output path is relative
// to the Command's working directory and must not leave the input root
// from there (a client would write that output outside its own tree).
// "../x" is fine for a Command working in "sub", not for one working at
// the root, nor when the Command is not in the CAS (the root is assumed).
func TestUpdateActionResultOutputPathsStayInside(t *testing.T) {
	ts := startServer(t, storage.ServerOptions{})
	ctx := context.Background()
	out := putString(t, ts.disk, "an output")
	n := 0
	actionIn := func(wd string) digest.Digest { // a new Action at every call
		n++
		cmd := putProto(t, ts.disk, &repb.Command{Arguments: []string{"true", fmt.Sprint(n)}, WorkingDirectory: wd})
		return putProto(t, ts.disk, &repb.Action{CommandDigest: cmd.Proto(), InputRootDigest: sha("").Proto()})
	}
	noCommand := putProto(t, ts.disk, &repb.Action{CommandDigest: sha("a Command nobody uploaded").Proto()})
	for _, tc := range []struct {
		name   string
		action digest.Digest
		result *repb.ActionResult
		want   string // "" for accepted
	}{
		{"file up from sub", actionIn("sub"), &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "../x", Digest: out.Proto()}}}, ""},
		{"file up from the root", actionIn(""), &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "../x", Digest: out.Proto()}}}, "output_files[0].path"},
		{"file up twice from sub", actionIn("sub"), &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "../../x", Digest: out.Proto()}}}, "output_files[0].path"},
		{"file up without the Command", noCommand, &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "../x", Digest: out.Proto()}}}, "output_files[0].path"},
		{"directory up from the root", actionIn(""), &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "..", TreeDigest: sha("").Proto()}}}, "output_directories[0].path"},
		{"symlink up from the root", actionIn(""), &repb.ActionResult{OutputSymlinks: []*repb.OutputSymlink{{Path: "../../l", Target: "x"}}}, "output_symlinks[0].path"},
		{"file symlink up from the root", actionIn(""), &repb.ActionResult{OutputFileSymlinks: []*repb.OutputSymlink{{Path: "../l", Target: "x"}}}, "output_file_symlinks[0].path"},
		{"directory symlink up from the root", actionIn(""), &repb.ActionResult{OutputDirectorySymlinks: []*repb.OutputSymlink{{Path: "../l", Target: "x"}}}, "output_directory_symlinks[0].path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ts.acc.UpdateActionResult(ctx, &repb.UpdateActionResultRequest{ActionDigest: tc.action.Proto(), ActionResult: tc.result})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantStatus(t, err, codes.InvalidArgument, tc.want, "escapes")
			_, err = ts.ac.Get(ctx, "", tc.action)
			wantStatus(t, err, codes.NotFound)
		})
	}
}
