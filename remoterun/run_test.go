package remoterun_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/testfs"
	"github.com/paddock-build/paddock/remoterun"
)

// project writes a small C project: include/greet.h, src/greet.h (a
// second header found through the source's directory) and src/main.c.
func project(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"include/greet.h":   "#define GREETING \"hello\"\n#include \"detail.h\"\n",
		"include/detail.h":  "static inline int answer(void) { return 42; }\n",
		"src/local.h":       "#define LOCAL 7\n",
		"src/main.c":        "#include <stdio.h>\n#include \"greet.h\"\n#include \"local.h\"\nint main(void) { printf(\"%s %d %d\\n\", GREETING, answer(), LOCAL); return 0; }\n",
		"src/unrelated.txt": "not an input\n",
	}
	testfs.WriteFiles(t, dir, files)
	return dir
}

func needGCC(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not installed")
	}
}

// A compile in a subdirectory of the root, with headers in a sibling
// directory: the remote object file is byte-identical to a local compile,
// and the rerun is a cache hit that uploads nothing.
func TestCompileMatchesLocalAndRerunHitsCache(t *testing.T) {
	needGCC(t)
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	dir := project(t)
	src := filepath.Join(dir, "src")
	local := exec.Command("gcc", "-c", "-I../include", "-O2", "main.c", "-o", "local.o")
	local.Dir = src
	if out, err := local.CombinedOutput(); err != nil {
		t.Fatalf("local compile: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(filepath.Join(src, "local.o"))
	os.Remove(filepath.Join(src, "local.o"))

	opts := remoterun.Options{
		Args: []string{"gcc", "-c", "-I../include", "-O2", "main.c", "-o", "main.o"},
		Root: dir, Dir: src, Environment: map[string]string{"PATH": os.Getenv("PATH")},
	}
	res, err := remoterun.Run(t.Context(), c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 || res.Cached {
		t.Fatalf("first run: %+v; want exit 0, executed", res)
	}
	got, err := os.ReadFile(filepath.Join(src, "main.o"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("main.o (%d bytes, %v) differs from the local compile's (%d bytes)", len(got), err, len(want))
	}
	// The input root holds exactly the source and its three headers (no
	// system header, nor the unrelated file): 4 files, 3 Directory
	// messages (root, src, include), the Command and the Action.
	if res.Uploaded.Blobs != 4+3+2 || res.Uploaded.MissingBlobs != res.Uploaded.Blobs {
		t.Errorf("uploaded %+v; want 9 blobs, all missing", res.Uploaded)
	}
	runs := f.Runner.Calls()
	os.Remove(filepath.Join(src, "main.o"))
	res, err = remoterun.Run(t.Context(), c, opts)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Cached || res.Uploaded.MissingBlobs != 0 || f.Runner.Calls() != runs {
		t.Fatalf("rerun: %+v, %d runs before and %d after; want a cache hit uploading nothing", res, runs, f.Runner.Calls())
	}
	if got, _ := os.ReadFile(filepath.Join(src, "main.o")); !bytes.Equal(got, want) {
		t.Fatal("main.o from the cache differs from the local compile's")
	}
}

// A failing command is a result with its exit code, its stderr passed
// through, not an error.
func TestFailingExitCodePassesThrough(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	res, err := remoterun.Run(t.Context(), c, remoterun.Options{
		Args: []string{"/bin/sh", "-c", "echo out; echo oops >&2; exit 3"},
		Root: dir, Dir: dir, Stdout: &stdout, Stderr: &stderr,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || stdout.String() != "out\n" || stderr.String() != "oops\n" {
		t.Fatalf("exit %d, stdout %q, stderr %q; want 3, \"out\\n\", \"oops\\n\"", res.ExitCode, stdout.String(), stderr.String())
	}
}

// A listed input that does not exist stops the run before anything is
// uploaded, with a message naming it.
func TestMissingInputFailsBeforeUpload(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	dir := t.TempDir()
	present := []byte("present input\n")
	if err := os.WriteFile(filepath.Join(dir, "present.txt"), present, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := remoterun.Run(t.Context(), c, remoterun.Options{
		Args: []string{"cat", "present.txt", "absent.txt"}, Root: dir, Dir: dir,
		Inputs: []string{"present.txt", "absent.txt"},
	})
	if err == nil || !strings.Contains(err.Error(), "input absent.txt: no such file or directory") {
		t.Fatalf("err = %v; want one naming absent.txt", err)
	}
	d := client.NewBlob(present).Digest
	if missing, err := f.CAS.FindMissing(t.Context(), []digest.Digest{d}); err != nil || len(missing) != 1 {
		t.Fatalf("the present input reached the CAS (missing %v, %v): the run uploaded before checking every input", missing, err)
	}
	if f.Runner.Calls() != 0 {
		t.Fatal("the farm ran something")
	}
}

// Inputs outside the root are refused; a directory input brings its whole
// tree; output files and directories come back into place, in a
// subdirectory too.
func TestDirectoryInputsAndOutputs(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "data", "deep"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "a.txt"), []byte("a\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "data", "deep", "b.txt"), []byte("b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("a.txt", filepath.Join(dir, "data", "link")); err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "outside.txt")
	if err := os.WriteFile(outside, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	base := remoterun.Options{Root: dir, Dir: dir, Environment: map[string]string{"PATH": os.Getenv("PATH")}}

	o := base
	o.Args, o.Inputs = []string{"true"}, []string{outside}
	if _, err := remoterun.Run(t.Context(), c, o); err == nil || !strings.Contains(err.Error(), "outside the input root") {
		t.Fatalf("an input outside the root: %v; want a refusal", err)
	}
	o = base
	o.Args = []string{"/bin/sh", "-c", "mkdir -p out/sub && cat data/a.txt data/deep/b.txt data/link > out/sub/all.txt && chmod +x out/sub/all.txt && ls data > list.txt"}
	o.Inputs, o.Outputs, o.OutputDirs = []string{"data"}, []string{"list.txt"}, []string{"out"}
	res, err := remoterun.Run(t.Context(), c, o)
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %+v, %v", res, err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "out", "sub", "all.txt")); string(got) != "a\nb\na\n" {
		t.Errorf("out/sub/all.txt = %q", got)
	}
	if info, err := os.Stat(filepath.Join(dir, "out", "sub", "all.txt")); err != nil || info.Mode()&0o100 == 0 {
		t.Errorf("out/sub/all.txt lost its executable bit: %v %v", info.Mode(), err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "list.txt")); string(got) != "a.txt\ndeep\nlink\n" {
		t.Errorf("list.txt = %q", got)
	}
}

// A compile without -o writes its object where gcc would (main.o), and
// with -MD its dependency file too: both came back as nothing, the run
// exiting 0 (outside probe).
func TestCompileOutputsWithoutDashO(t *testing.T) {
	needGCC(t)
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	dir := project(t)
	src := filepath.Join(dir, "src")
	res, err := remoterun.Run(t.Context(), c, remoterun.Options{
		Args: []string{"gcc", "-MD", "-c", "-I../include", "main.c"},
		Root: dir, Dir: src, Environment: map[string]string{"PATH": os.Getenv("PATH")},
	})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("run: %+v, %v", res, err)
	}
	if st, err := os.Stat(filepath.Join(src, "main.o")); err != nil || st.Size() == 0 {
		t.Errorf("main.o: %v", err)
	}
	if d, err := os.ReadFile(filepath.Join(src, "main.d")); err != nil || !strings.Contains(string(d), "greet.h") {
		t.Errorf("main.d: %q, %v; want the dependency file naming greet.h", d, err)
	}
}

// An input that is neither a file, a directory nor a symlink (a FIFO,
// whose open would block until a writer came, Ctrl-C or not) is refused
// before anything is uploaded.
func TestFIFOInputIsRefused(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	dir := t.TempDir()
	if err := syscall.Mkfifo(filepath.Join(dir, "ff"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := remoterun.Run(t.Context(), c, remoterun.Options{Args: []string{"true"}, Root: dir, Dir: dir, Inputs: []string{"ff"}})
	if err == nil || !strings.Contains(err.Error(), "input ff is neither a file, a directory nor a symlink") {
		t.Fatalf("err = %v; want a refusal naming ff", err)
	}
}
