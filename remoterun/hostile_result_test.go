package remoterun_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	lpb "cloud.google.com/go/longrunning/autogen/longrunningpb"
	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/internal/testfs"
	"github.com/paddock-build/paddock/remoterun"
	"github.com/paddock-build/paddock/storage"
)

// userFiles are what a user's working directory holds before a run; a
// refused result must leave every one of them as it was.
var userFiles = map[string]string{
	".bashrc":              "echo original\n",
	"input.c":              "int main(){}\n",
	".git/HEAD":            "ref: refs/heads/main\n",
	"out/keep":             "old output\n",
	".paddock-tmp-out.txt": "the user's own file\n",
}

// hostileRun runs `true` remotely against s, in a fresh working
// directory holding userFiles, declaring the output file out.txt and the
// output directory out; it returns the directory, what was printed and
// Run's error.
func hostileRun(t *testing.T, ctx context.Context, c *client.Client, adjust func(*remoterun.Options)) (string, string, error) {
	t.Helper()
	dir := t.TempDir()
	testfs.WriteFiles(t, dir, userFiles)
	var out bytes.Buffer
	opts := remoterun.Options{
		Args: []string{"true"}, Root: dir, Dir: dir, NoCompilerDeps: true,
		Outputs: []string{"out.txt"}, OutputDirs: []string{"out"}, Stdout: &out, Stderr: &out,
	}
	if adjust != nil {
		adjust(&opts)
	}
	_, err := remoterun.Run(ctx, c, opts)
	return dir, out.String(), err
}

// assertUntouched fails unless every user file is as it was and nothing
// else was written.
func assertUntouched(t *testing.T, dir string) {
	t.Helper()
	for p, body := range userFiles {
		if got, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(got) != body {
			t.Errorf("%s = %q, %v; want it untouched (%q)", p, got, err, body)
		}
	}
	for _, p := range []string{"out.txt", ".git/hooks/pre-commit", "out/s", "out/f"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); err == nil {
			t.Errorf("%s was written", p)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 5 {
		t.Errorf("the working directory holds %d entries, want the 5 it had", len(entries))
	}
}

func result(r *repb.ActionResult) *repb.ExecuteResponse {
	return &repb.ExecuteResponse{Result: r}
}

// Hole 1: only outputs the Command declared are written; a result naming
// any other path is refused whole, the path named in the error.
func TestUndeclaredOutputIsRefused(t *testing.T) {
	s, c := startHostile(t)
	for _, p := range []string{".bashrc", "input.c", ".git/hooks/pre-commit"} {
		t.Run(p, func(t *testing.T) {
			s.result = result(&repb.ActionResult{OutputFiles: []*repb.OutputFile{
				{Path: "out.txt", Digest: s.put([]byte("fine\n"))},
				{Path: p, Digest: s.put([]byte("PWNED\n")), IsExecutable: true},
			}})
			dir, _, err := hostileRun(t, t.Context(), c, nil)
			if err == nil || !strings.Contains(err.Error(), "did not declare") || !strings.Contains(err.Error(), p) {
				t.Fatalf("err = %v; want a refusal naming %s", err, p)
			}
			assertUntouched(t, dir)
		})
	}
	s.result = result(&repb.ActionResult{OutputSymlinks: []*repb.OutputSymlink{{Path: ".bashrc", Target: "input.c"}}})
	if dir, _, err := hostileRun(t, t.Context(), c, nil); err == nil {
		t.Error("an undeclared output symlink was accepted")
	} else {
		assertUntouched(t, dir)
	}
}

// Hole 2: a Tree is fetched and checked before the output directory it
// replaces is touched, and a Tree using a name twice (a symlink s -> ..
// and a directory s) is refused.
func TestRejectedTreeKeepsOutputDirectory(t *testing.T) {
	s, c := startHostile(t)
	child := &repb.Directory{Files: []*repb.FileNode{{Name: ".bashrc", Digest: s.put([]byte("PWNED\n"))}}}
	pwned := s.put([]byte("PWNED\n"))
	for name, root := range map[string]*repb.Directory{
		"symlink and directory s": {Directories: []*repb.DirectoryNode{{Name: "s", Digest: s.putProto(child)}}, Symlinks: []*repb.SymlinkNode{{Name: "s", Target: ".."}}},
		"file named ..":           {Files: []*repb.FileNode{{Name: "..", Digest: pwned}}},
		"file named a/b":          {Files: []*repb.FileNode{{Name: "a/b", Digest: pwned}}},
		"file and directory x":    {Files: []*repb.FileNode{{Name: "x", Digest: pwned}}, Directories: []*repb.DirectoryNode{{Name: "x", Digest: s.putProto(child)}}},
		"missing child":           {Files: []*repb.FileNode{{Name: "f", Digest: pwned}}, Directories: []*repb.DirectoryNode{{Name: "z", Digest: client.NewBlob([]byte("nope")).Digest.Proto()}}},
	} {
		t.Run(name, func(t *testing.T) {
			tree := &repb.Tree{Root: root, Children: []*repb.Directory{child}}
			s.result = result(&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: s.putProto(tree)}}})
			dir, _, err := hostileRun(t, t.Context(), c, nil)
			if err == nil {
				t.Fatal("the tree was accepted")
			}
			assertUntouched(t, dir)
		})
	}
}

// Hole 3: symlinks whose target is absolute or climbs out of the working
// directory are refused, as output symlinks and inside Trees; links that
// stay inside are written.
func TestEscapingSymlinkIsRefused(t *testing.T) {
	s, c := startHostile(t)
	treeWith := func(target string) *repb.ActionResult {
		tree := &repb.Tree{Root: &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: target}}}}
		return &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: s.putProto(tree)}}}
	}
	for name, r := range map[string]*repb.ActionResult{
		"absolute":        {OutputSymlinks: []*repb.OutputSymlink{{Path: "out.txt", Target: "/etc/passwd"}}},
		"climbing":        {OutputFileSymlinks: []*repb.OutputSymlink{{Path: "out.txt", Target: "../outside"}}},
		"tree absolute":   treeWith("/etc"),
		"tree climbing":   treeWith("../../home"),
		"tree climbing 2": treeWith("x/../../.."),
		// With x -> . beside it, each x/ is no level on disk but one on
		// paper: the link reached /etc/passwd.
		"tree chain": func() *repb.ActionResult {
			tree := &repb.Tree{Root: &repb.Directory{Symlinks: []*repb.SymlinkNode{
				{Name: "l", Target: "x/x/x/x/x/x/x/x/x/x/x/x/../../../../../../../../../../../../../etc/passwd"}, {Name: "x", Target: "."}}}}
			return &repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: s.putProto(tree)}}}
		}(),
		"chain": {OutputSymlinks: []*repb.OutputSymlink{{Path: "out.txt", Target: "x/../input.c"}}},
	} {
		t.Run(name, func(t *testing.T) {
			s.result = result(r)
			dir, _, err := hostileRun(t, t.Context(), c, nil)
			if err == nil {
				t.Fatal("the symlink was accepted")
			}
			assertUntouched(t, dir)
		})
	}
	tree := &repb.Tree{Root: &repb.Directory{Symlinks: []*repb.SymlinkNode{{Name: "l", Target: "../input.c"}}}}
	s.result = result(&repb.ActionResult{
		OutputSymlinks:    []*repb.OutputSymlink{{Path: "out.txt", Target: "out/l"}},
		OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: s.putProto(tree)}},
	})
	dir, _, err := hostileRun(t, t.Context(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(dir, "out.txt")); err != nil || string(got) != userFiles["input.c"] {
		t.Errorf("out.txt through out/l = %q, %v; want input.c's content", got, err)
	}
}

// Hole 3, inputs: a symlink given as an input is followed only if its
// target is inside the input root, so a planted input.c -> /etc/passwd is
// never uploaded.
func TestSymlinkInputLeavingRootIsRefused(t *testing.T) {
	s, c := startHostile(t)
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("root:x:0:0\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := hostileRun(t, t.Context(), c, func(o *remoterun.Options) {
		os.Remove(filepath.Join(o.Dir, "input.c"))
		if err := os.Symlink(secret, filepath.Join(o.Dir, "input.c")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(".bashrc", filepath.Join(o.Dir, "inside.c")); err != nil {
			t.Fatal(err)
		}
		o.Inputs = []string{"inside.c", "input.c"}
	})
	if err == nil || !strings.Contains(err.Error(), "input input.c is a symlink to") {
		t.Fatalf("err = %v; want input.c refused as a symlink leaving the root", err)
	}
	if s.readCount() != 0 {
		t.Error("the run went on to read results")
	}
	in, err := remoterun.NewInputs(filepath.Dir(secret), filepath.Dir(secret))
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Add(secret); err != nil {
		t.Errorf("a plain file inside the root: %v", err)
	}
}

// Hole 4: inline bytes must hash to their digest; inline contents without
// a digest are refused; stdout and stderr that do not match their digest
// are not printed.
func TestInlineBytesAreVerified(t *testing.T) {
	s, c := startHostile(t)
	good := client.NewBlob([]byte("good\n")).Digest.Proto()
	for name, r := range map[string]*repb.ActionResult{
		"contents not matching": {OutputFiles: []*repb.OutputFile{{Path: "out.txt", Digest: good, Contents: []byte("EVIL\n")}}},
		"contents, no digest":   {OutputFiles: []*repb.OutputFile{{Path: "out.txt", Contents: []byte("EVIL\n")}}},
		"stdout_raw":            {StdoutRaw: []byte("EVIL\n"), StdoutDigest: good},
		"stderr_raw":            {StderrRaw: []byte("EVIL\n"), StderrDigest: good},
	} {
		t.Run(name, func(t *testing.T) {
			s.result = result(r)
			dir, printed, err := hostileRun(t, t.Context(), c, nil)
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(printed, "EVIL") {
				t.Errorf("printed %q", printed)
			}
			assertUntouched(t, dir)
		})
	}
	s.result = result(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out.txt", Digest: good, Contents: []byte("good\n")}}})
	if _, _, err := hostileRun(t, t.Context(), c, nil); err != nil {
		t.Errorf("matching inline contents: %v", err)
	}
}

// Hole 6: a Tree blob larger than the server-side bound is refused before
// it is read into memory.
func TestOversizedTreeIsNotRead(t *testing.T) {
	s, c := startHostile(t)
	huge := &repb.Digest{Hash: strings.Repeat("ab", 32), SizeBytes: storage.MaxTreeBytes + 1}
	s.result = result(&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: huge}}})
	dir, _, err := hostileRun(t, t.Context(), c, nil)
	if status.Code(err) != codes.ResourceExhausted || s.readCount() != 0 {
		t.Fatalf("err = %v after %d reads; want RESOURCE_EXHAUSTED before any read", err, s.readCount())
	}
	assertUntouched(t, dir)
}

// Hole 7: a small Tree whose directories share one subtree by digest is
// counted as it would be written (2^21 files here) and refused before
// anything is written.
func TestSharedSubtreesAreCountedExpanded(t *testing.T) {
	s, c := startHostile(t)
	cur := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: s.put([]byte("x"))}}}
	var children []*repb.Directory
	for range 21 {
		children = append(children, cur)
		d := client.ProtoBlob(cur).Digest.Proto()
		cur = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: d}, {Name: "b", Digest: d}}}
	}
	s.result = result(&repb.ActionResult{OutputDirectories: []*repb.OutputDirectory{{Path: "out", TreeDigest: s.putProto(&repb.Tree{Root: cur, Children: children})}}})
	// The old client wrote until it ran out of time; a refusal is at once.
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	dir, _, err := hostileRun(t, ctx, c, nil)
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v; want RESOURCE_EXHAUSTED", err)
	}
	assertUntouched(t, dir)
}

// Hole 8: with a timeout, a server that never finishes the operation
// (silent, or sending done=false forever) or stalls a blob read cannot
// hang the run: it gives up after the timeout plus the grace.
func TestRunGivesUpOnAHangingServer(t *testing.T) {
	s, c := startHostile(t)
	stalled := &repb.Digest{Hash: strings.Repeat("ef", 32), SizeBytes: 3 << 20}
	s.stall[stalled.Hash] = true
	for name, execute := range map[string]func(repb.Execution_ExecuteServer) error{
		"silent": func(stream repb.Execution_ExecuteServer) error {
			<-stream.Context().Done()
			return nil
		},
		"never done": func(stream repb.Execution_ExecuteServer) error {
			for stream.Send(&lpb.Operation{Name: "op"}) == nil {
			}
			return nil
		},
		"stalled read": nil,
	} {
		t.Run(name, func(t *testing.T) {
			s.execute = execute
			s.result = result(&repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out.txt", Digest: stalled}}})
			_, _, err := hostileRun(t, t.Context(), c, func(o *remoterun.Options) {
				o.Timeout, o.WaitGrace = 50*time.Millisecond, 50*time.Millisecond
			})
			if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("err = %v; want DEADLINE_EXCEEDED", err)
			}
			if !strings.Contains(err.Error(), "gave up after the timeout") {
				t.Errorf("err = %v; want it to say why it gave up", err)
			}
		})
	}
}

// The response's message is for the user (REv2), also when the execution
// succeeded; it is shown quoted, so that terminal escapes in it are not
// run by the user's terminal.
func TestSuccessfulResponseMessageIsShownQuoted(t *testing.T) {
	s, c := startHostile(t)
	s.result = &repb.ExecuteResponse{Result: &repb.ActionResult{}, Message: "see \x1b]0;pwned\x07 http://farm/op/1"}
	var log bytes.Buffer
	_, _, err := hostileRun(t, t.Context(), c, func(o *remoterun.Options) {
		o.Outputs, o.OutputDirs, o.Log = nil, nil, &log
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), `the server says: "see \x1b]0;pwned\a http://farm/op/1"`) || strings.Contains(log.String(), "\x1b") {
		t.Errorf("log %q; want the message, quoted", log.String())
	}
}
