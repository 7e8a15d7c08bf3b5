package worker_test

import (
	"context"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/storage"
)

// wantWholeWorkingDirectory runs a command writing "new" in working
// directory wd over root, asking for output "" as REv2 2.0's
// output_directories or (v21) 2.1's output_paths, and checks that the
// whole working directory is collected: one output directory with path "",
// no symlinks, and a Tree whose root holds new. The whole-root tests share
// it so that every form and place of "" is held to the same.
func wantWholeWorkingDirectory(t *testing.T, h *harness, root *repb.Directory, wd string, v21 bool) {
	t.Helper()
	wantWholeWorkingDirectoryAs(t, h, root, wd, v21, "")
}

// wantWholeWorkingDirectoryAs is wantWholeWorkingDirectory with the
// output named whole ("" or ".", as BuildStream 2 names it), which the
// result's directory keeps.
func wantWholeWorkingDirectoryAs(t *testing.T, h *harness, root *repb.Directory, wd string, v21 bool, whole string) {
	t.Helper()
	cmd := &repb.Command{Arguments: []string{"/bin/sh", "-c", "echo x > new"}, WorkingDirectory: wd, OutputDirectories: []string{whole}}
	if v21 {
		cmd.OutputDirectories, cmd.OutputPaths = nil, []string{whole}
	}
	res := ok(t, h.w.Execute(context.Background(), h.action(cmd, root, false)))
	if len(res.OutputDirectories) != 1 || res.OutputDirectories[0].Path != whole || len(res.OutputSymlinks)+len(res.OutputDirectorySymlinks) != 0 {
		t.Fatalf("working directory %q, v2.1 %v: output directories %v, symlinks %v %v; want the one directory with path %q", wd, v21, res.OutputDirectories, res.OutputSymlinks, res.OutputDirectorySymlinks, whole)
	}
	// The scheduler holds the result to these before it delivers it:
	// "." passed here and was refused there, and the action was retried
	// until it failed UNAVAILABLE.
	if err := storage.ValidateActionResult(repb.DigestFunction_SHA256, res); err != nil {
		t.Fatalf("working directory %q, v2.1 %v, output %q: the result is refused: %v", wd, v21, whole, err)
	}
	if err := storage.CheckOutputsInside(res, wd); err != nil {
		t.Fatalf("working directory %q, v2.1 %v, output %q: the result is refused: %v", wd, v21, whole, err)
	}
	tree := &repb.Tree{}
	if err := proto.Unmarshal(h.read(res.OutputDirectories[0].TreeDigest), tree); err != nil {
		t.Fatalf("working directory %q, v2.1 %v: output tree: %v", wd, v21, err)
	}
	if fs := tree.Root.GetFiles(); len(fs) != 1 || fs[0].Name != "new" {
		t.Fatalf("working directory %q, v2.1 %v: tree root files %v, want new", wd, v21, fs)
	}
}

// TestWholeRootOutputDirectory: output_directories [""] captures the whole
// working directory (the spec's special value), also when that is the
// input root itself. It used to be dropped there, and the empty result
// cached. output_paths [""], which supersedes it, does the same (it was
// refused).
func TestWholeRootOutputDirectory(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		wd  string
		v21 bool
	}{{"", false}, {"w", false}, {"", true}, {"w", true}} {
		wantWholeWorkingDirectory(t, h, &repb.Directory{}, tc.wd, tc.v21)
		// BuildStream 2 names it "." (os.path.relpath): refused, every
		// build of it failed INVALID_ARGUMENT.
		wantWholeWorkingDirectoryAs(t, h, &repb.Directory{}, tc.wd, tc.v21, ".")
	}
}

// TestWholeWorkingDirectoryThroughASymlink: output "" with a working
// directory that is a symlink inside the input root is the directory the
// command ran in, collected as a directory with path "" (it was reported
// as a symlink with an empty path, refused, and retried four times).
func TestWholeWorkingDirectoryThroughASymlink(t *testing.T) {
	h := newHarness(t)
	sub := h.putProto(&repb.Directory{})
	root := &repb.Directory{
		Directories: []*repb.DirectoryNode{{Name: "sub", Digest: sub.Proto()}},
		Symlinks:    []*repb.SymlinkNode{{Name: "link", Target: "sub"}},
	}
	for _, v21 := range []bool{false, true} {
		wantWholeWorkingDirectory(t, h, root, "link", v21)
		wantWholeWorkingDirectoryAs(t, h, root, "link", v21, ".")
	}
}

// TestLegacySymlinkOutputOfTheWrongType: REv2 2.0 says an output_files
// entry that is a symlink to something other than a regular file, or an
// output_directories entry that is a symlink to something other than a
// directory, is FAILED_PRECONDITION. A symlink to the right type is
// reported as a symlink (TestLegacyOutputsAndParents).
func TestLegacySymlinkOutputOfTheWrongType(t *testing.T) {
	h := newHarness(t)
	for name, cmd := range map[string]*repb.Command{
		"file to a directory": {Arguments: []string{"/bin/sh", "-c", "mkdir d && ln -s d a"}, OutputFiles: []string{"a"}},
		"directory to a file": {Arguments: []string{"/bin/sh", "-c", "echo x > f && ln -s f a"}, OutputDirectories: []string{"a"}},
	} {
		t.Run(name, func(t *testing.T) {
			resp := h.w.Execute(context.Background(), h.action(cmd, &repb.Directory{}, false))
			if st := status.FromProto(resp.Status); st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), `"a"`) {
				t.Fatalf("status %v, want FAILED_PRECONDITION naming \"a\"", st)
			}
		})
	}
}

// TestOutputsREv2CannotCarry: a symlink target or a name that is not
// UTF-8 (protobuf strings must be) fails the execution with
// FAILED_PRECONDITION naming the output, not INTERNAL; the result still
// carries the exit code and stdout, and nothing is cached.
func TestOutputsREv2CannotCarry(t *testing.T) {
	h := newHarness(t)
	for name, tc := range map[string]struct{ script, output string }{
		"symlink target":         {`ln -s "$(printf 'a\377b')" l`, "l"},
		"name in an output tree": {`mkdir o && touch "o/$(printf 'a\377b')"`, "o"},
		"symlink target in tree": {`mkdir o && ln -s "$(printf 'a\377b')" o/l`, "o"},
	} {
		t.Run(name, func(t *testing.T) {
			a := h.action(sh("echo visible; "+tc.script+"; exit 3", tc.output), &repb.Directory{}, false)
			resp := h.w.Execute(context.Background(), a)
			st := status.FromProto(resp.Status)
			if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), `"`+tc.output) || !strings.Contains(st.Message(), "UTF-8") {
				t.Fatalf("status %v, want FAILED_PRECONDITION naming %q and UTF-8", st, tc.output)
			}
			r := resp.Result
			if r.GetExitCode() != 3 || string(h.read(r.GetStdoutDigest())) != "visible\n" {
				t.Fatalf("result %v: want exit code 3 and the stdout", r)
			}
			if len(r.OutputFiles)+len(r.OutputDirectories)+len(r.OutputSymlinks) != 0 {
				t.Fatalf("outputs reported beside the failure: %v", r)
			}
			if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
				t.Fatalf("cached: %v", err)
			}
		})
	}
}

// TestSpecialFilesInOutputTreesAreRefused: a FIFO or a socket inside an
// output directory fails the action naming it, as one declared as an
// output does; it is not left out of a tree that is then cached.
func TestSpecialFilesInOutputTreesAreRefused(t *testing.T) {
	h := newHarness(t)
	for name, script := range map[string]string{
		"fifo":        `mkdir -p o/sub && mkfifo o/sub/f && echo x > o/x`,
		"socket":      `mkdir o && python3 -c 'import socket; socket.socket(socket.AF_UNIX).bind("o/s")'`,
		"fifo at top": `mkdir o && mkfifo o/f`,
	} {
		t.Run(name, func(t *testing.T) {
			a := h.action(sh(script+"; echo visible", "o"), &repb.Directory{}, false)
			resp := h.w.Execute(context.Background(), a)
			st := status.FromProto(resp.Status)
			if st.Code() != codes.FailedPrecondition || !strings.Contains(st.Message(), `"o/`) {
				t.Fatalf("status %v, want FAILED_PRECONDITION naming the entry in o", st)
			}
			if string(h.read(resp.Result.GetStdoutDigest())) != "visible\n" {
				t.Fatalf("result %v: want the stdout", resp.Result)
			}
			if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
				t.Fatalf("cached: %v", err)
			}
		})
	}
}

// TestOutputsThroughSymlinksInsideTheRoot: a working directory, or an
// output's parent, that is a symlink to a directory inside the input root
// is followed, and the output collected; one leading out of the root is
// not (TestSymlinkInInputRootCannotRedirectOutputs).
func TestOutputsThroughSymlinksInsideTheRoot(t *testing.T) {
	h := newHarness(t)
	root := &repb.Directory{
		Directories: []*repb.DirectoryNode{{Name: "d", Digest: h.putProto(&repb.Directory{}).Proto()}},
		Symlinks:    []*repb.SymlinkNode{{Name: "l", Target: "d"}},
	}
	inLink := sh("echo new > out", "out")
	inLink.WorkingDirectory = "l"
	for name, cmd := range map[string]*repb.Command{
		"working directory": inLink,
		"output's parent":   sh("echo new > l/out", "l/out"),
	} {
		t.Run(name, func(t *testing.T) {
			res := ok(t, h.w.Execute(context.Background(), h.action(cmd, root, false)))
			if len(res.OutputFiles) != 1 || string(h.read(res.OutputFiles[0].Digest)) != "new\n" {
				t.Fatalf("output files %v, want the one written through the symlink", res.OutputFiles)
			}
		})
	}
}

// TestInputRootPathTooLong: a tree of long names nested deep enough that
// its paths pass the kernel's PATH_MAX is INVALID_ARGUMENT naming the
// path, not INTERNAL: it is the client's tree that cannot be built.
func TestInputRootPathTooLong(t *testing.T) {
	h := newHarness(t)
	name := strings.Repeat("n", 250)
	dir := &repb.Directory{Files: []*repb.FileNode{{Name: "f", Digest: h.put([]byte("deep")).Proto()}}}
	for range 20 { // 20 × 251 bytes
		dir = &repb.Directory{Directories: []*repb.DirectoryNode{{Name: name, Digest: h.putProto(dir).Proto()}}}
	}
	resp := h.w.Execute(context.Background(), h.action(sh("true"), dir, false))
	if st := status.FromProto(resp.Status); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "too long") {
		t.Fatalf("status %v, want INVALID_ARGUMENT saying the path is too long", st)
	}
}

// TestInputNameTooLong: an input whose name is past Linux's NAME_MAX (255
// bytes) is INVALID_ARGUMENT naming it and the limit, whatever its kind.
// A file's was INTERNAL, which Bazel retries, from the file cache's link;
// a directory's or symlink's blamed the whole path's length.
func TestInputNameTooLong(t *testing.T) {
	h := newHarness(t)
	name := strings.Repeat("n", 256)
	blob := h.put([]byte("x")).Proto()
	for kind, dir := range map[string]*repb.Directory{
		"file":      {Files: []*repb.FileNode{{Name: name, Digest: blob}}},
		"directory": {Directories: []*repb.DirectoryNode{{Name: name, Digest: h.putProto(&repb.Directory{}).Proto()}}},
		"symlink":   {Symlinks: []*repb.SymlinkNode{{Name: name, Target: "x"}}},
	} {
		resp := h.w.Execute(context.Background(), h.action(sh("true"), dir, false))
		if st := status.FromProto(resp.Status); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), kind+" \"nnn") || !strings.Contains(st.Message(), "NAME_MAX") {
			t.Errorf("a %s with a 256-byte name: %v, want INVALID_ARGUMENT naming it and NAME_MAX", kind, st)
		}
	}
}

// TestInputNameNotUTF8NamesItsDirectory: a Directory with a name that is
// not UTF-8 cannot be parsed at all; the refusal names where in the tree
// it was, not only its digest.
func TestInputNameNotUTF8NamesItsDirectory(t *testing.T) {
	h := newHarness(t)
	blob, err := proto.Marshal(h.put([]byte("x")).Proto())
	if err != nil {
		t.Fatal(err)
	}
	node := protowire.AppendString(protowire.AppendTag(nil, 1, protowire.BytesType), "x\xff")
	node = protowire.AppendBytes(protowire.AppendTag(node, 2, protowire.BytesType), blob)
	bad := h.put(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), node))
	root := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "sub", Digest: bad.Proto()}}}
	resp := h.w.Execute(context.Background(), h.action(sh("true"), root, false))
	if st := status.FromProto(resp.Status); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `"sub"`) {
		t.Fatalf("a name not UTF-8 in sub: %v, want INVALID_ARGUMENT naming \"sub\"", st)
	}
}

// TestOutputTreeOverTheCacheLimit: an output directory whose Tree would be
// past what the action cache serves (storage.MaxTreeBytes: names, symlink
// targets, digests) is refused before the worker holds it all in memory:
// 17,000 symlinks with 4 KB targets, within max_output_bytes.
func TestOutputTreeOverTheCacheLimit(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat(strings.Repeat("t", 250)+"/", 16) // 4016 bytes
	script := "mkdir o && seq 17000 | sed 's|^|" + long + "|' | xargs ln -s -t o"
	a := h.action(sh(script, "o"), &repb.Directory{}, false)
	resp := h.w.Execute(context.Background(), a)
	if st := status.FromProto(resp.Status); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "Tree") {
		t.Fatalf("status %v, want INVALID_ARGUMENT about the Tree's size", st)
	}
	if _, err := h.ac.Get(context.Background(), "main", actionDigest(a)); status.Code(err) != codes.NotFound {
		t.Fatalf("cached: %v", err)
	}
}
