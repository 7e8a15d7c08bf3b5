package storage_test

import (
	"context"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
			ac.Put(ctx, "", action, result)
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
