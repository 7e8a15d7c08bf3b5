package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/images/imagetest"
	"github.com/paddock-build/paddock/internal/testfs"
)

// paddockRun runs `paddock run --endpoint addr args...` in dir and returns
// its stdout, stderr and exit code.
func paddockRun(t *testing.T, dir, addr string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(paddockBin, append([]string{"run", "--endpoint", addr}, args...)...)
	cmd.Dir = dir
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("paddock run: %v", err)
	}
	return stdout.String(), stderr.String(), 0
}

// TestPaddockRun drives `paddock run` against `paddock up`, as a recc user
// would: a gcc compile with headers (byte-identical to a local compile, a
// cache hit the second time), a failing command's exit code, a missing
// input, the REv2 2.2 fields, an unknown output node property, and a
// command in a container image from a loopback registry.
func TestPaddockRun(t *testing.T) {
	needPaddock(t)
	if _, err := exec.LookPath("gcc"); err != nil {
		t.Skip("gcc is not installed")
	}
	host := imagetest.Serve(t)
	cfgPath := filepath.Join(searchableTempDir(t), "runner.yaml")
	if err := os.WriteFile(cfgPath, []byte("version: 1\nimages:\n  insecure: [\""+host+"\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f := startUp(t, "", "--runner-config", cfgPath)

	t.Run("gcc compile with headers, then a cache hit", func(t *testing.T) {
		dir := t.TempDir()
		testfs.WriteFiles(t, dir, map[string]string{
			"include/greet.h":  "#define GREETING \"hello\"\n#include \"detail.h\"\n",
			"include/detail.h": "static inline int answer(void) { return 42; }\n",
			"src/main.c":       "#include <stdio.h>\n#include \"greet.h\"\nint main(void) { printf(\"%s %d\\n\", GREETING, answer()); return 0; }\n",
		})
		src := filepath.Join(dir, "src")
		compile := []string{"gcc", "-c", "-O2", "-I../include", "main.c", "-o", "main.o"}
		local := exec.Command("gcc", "-c", "-O2", "-I../include", "main.c", "-o", "local.o")
		local.Dir = src
		if out, err := local.CombinedOutput(); err != nil {
			t.Fatalf("local compile: %v\n%s", err, out)
		}
		want, _ := os.ReadFile(filepath.Join(src, "local.o"))
		args := append([]string{"--root", dir, "-v", "--"}, compile...)
		_, stderr, code := paddockRun(t, src, f.addr, args...)
		if code != 0 || !strings.Contains(stderr, ": executed, exit code 0") {
			t.Fatalf("paddock run: exit %d, stderr:\n%s", code, stderr)
		}
		if got, _ := os.ReadFile(filepath.Join(src, "main.o")); !bytes.Equal(got, want) {
			t.Fatalf("main.o from the farm (%d bytes) differs from the local compile (%d bytes)", len(got), len(want))
		}
		os.Remove(filepath.Join(src, "main.o"))
		_, stderr, code = paddockRun(t, src, f.addr, args...)
		if code != 0 || !strings.Contains(stderr, ": cache hit, exit code 0; uploaded 0 of ") {
			t.Fatalf("rerun: exit %d, stderr:\n%s\nwant a cache hit that uploads nothing", code, stderr)
		}
		if got, _ := os.ReadFile(filepath.Join(src, "main.o")); !bytes.Equal(got, want) {
			t.Fatal("main.o from the cache differs from the local compile")
		}
	})

	t.Run("a failing command's exit code", func(t *testing.T) {
		stdout, stderr, code := paddockRun(t, t.TempDir(), f.addr, "--", "/bin/sh", "-c", "echo out; echo err >&2; exit 7")
		if code != 7 || stdout != "out\n" || stderr != "err\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 7, the command's own output", code, stdout, stderr)
		}
	})

	t.Run("a timeout: the output so far, then the failure", func(t *testing.T) {
		stdout, stderr, code := paddockRun(t, t.TempDir(), f.addr, "--timeout", "1s", "--", "/bin/sh", "-c", "echo partial; exec sleep 60")
		if code != 1 || stdout != "partial\n" || !strings.Contains(stderr, "DeadlineExceeded") ||
			strings.Count(stderr, "timed out") != 1 || !strings.Contains(stderr, "(the result was not cached)") {
			t.Fatalf("exit %d, stdout %q, stderr %q; want 1, what was printed before the timeout, DEADLINE_EXCEEDED saying the timeout once", code, stdout, stderr)
		}
	})

	t.Run("a missing input", func(t *testing.T) {
		dir := t.TempDir()
		testfs.WriteFiles(t, dir, map[string]string{"present.txt": "unique content of TestPaddockRun's missing-input case\n"})
		cas := filepath.Join(f.data, "storage")
		casBefore := countFiles(t, cas)
		_, stderr, code := paddockRun(t, dir, f.addr, "--input", "present.txt", "--input", "absent.txt", "--", "cat", "present.txt")
		if code == 0 || !strings.Contains(stderr, "input absent.txt: no such file or directory") {
			t.Fatalf("exit %d, stderr %q; want a failure naming absent.txt", code, stderr)
		}
		if after := countFiles(t, cas); after != casBefore {
			t.Fatalf("the farm's storage went from %d to %d files: something was uploaded", casBefore, after)
		}
	})

	t.Run("REv2 2.2: output_paths, the platform in the Action only", func(t *testing.T) {
		dir := t.TempDir()
		stdout, stderr, code := paddockRun(t, dir, f.addr, "-v", "--api-version", "2.2", "--platform", "OSFamily=Linux",
			"--output", "out/result.txt", "--", "/bin/sh", "-c", "mkdir -p out && echo 2.2 > out/result.txt && echo done")
		if code != 0 || stdout != "done\n" {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
		}
		// What reached the farm: the platform in the Action only, the
		// output in output_paths.
		m := regexp.MustCompile(`action ([0-9a-f]{64})/(\d+):`).FindStringSubmatch(stderr)
		if m == nil {
			t.Fatalf("no action digest in %q", stderr)
		}
		size, _ := strconv.ParseInt(m[2], 10, 64)
		c := newClient(t, f.addr)
		act, cmd := &repb.Action{}, &repb.Command{}
		if err := proto.Unmarshal(c.read(t.Context(), &repb.Digest{Hash: m[1], SizeBytes: size}), act); err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(c.read(t.Context(), act.CommandDigest), cmd); err != nil {
			t.Fatal(err)
		}
		if len(act.Platform.GetProperties()) != 1 || cmd.Platform != nil || len(cmd.OutputPaths) != 1 || len(cmd.OutputFiles) != 0 {
			t.Fatalf("REv2 2.2 action: platform %v in the Action, %v in the Command, output_paths %q, output_files %q",
				act.Platform, cmd.Platform, cmd.OutputPaths, cmd.OutputFiles)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "out", "result.txt")); string(got) != "2.2\n" {
			t.Fatalf("out/result.txt = %q", got)
		}
		_, stderr, code = paddockRun(t, dir, f.addr, "--api-version", "2.2", "--output-node-property", "mtime", "--", "true")
		if code == 0 || !strings.Contains(stderr, "InvalidArgument") || !strings.Contains(stderr, "output_node_properties") {
			t.Fatalf("unknown output node property: exit %d, stderr %q; want INVALID_ARGUMENT naming the field", code, stderr)
		}
	})

	t.Run("REv2 2.0 fields", func(t *testing.T) {
		dir := t.TempDir()
		_, stderr, code := paddockRun(t, dir, f.addr, "--api-version", "2.0", "--output", "sub/a.txt", "--output-dir", "gen/d",
			"--", "/bin/sh", "-c", "echo a > sub/a.txt && mkdir gen/d && echo b > gen/d/b.txt")
		if code != 0 {
			t.Fatalf("exit %d, stderr %q (REv2 2.0: the parents of outputs exist before the command runs)", code, stderr)
		}
		a, _ := os.ReadFile(filepath.Join(dir, "sub", "a.txt"))
		b, _ := os.ReadFile(filepath.Join(dir, "gen", "d", "b.txt"))
		if string(a) != "a\n" || string(b) != "b\n" {
			t.Fatalf("sub/a.txt = %q, gen/d/b.txt = %q", a, b)
		}
	})

	t.Run("container image from a loopback registry", func(t *testing.T) {
		ref := imagetest.Push(t, host, "e2e/run:1", imagetest.MarkerImage(t, "linux/"+runtime.GOARCH,
			v1.Config{Env: []string{"PATH=/bin"}}, "from the image\n", "sh", "cat"))
		dir := t.TempDir()
		_, stderr, code := paddockRun(t, dir, f.addr, "--container-image", strings.TrimPrefix(ref, "docker://"),
			"--env", "PATH=/bin", "--output", "marker.txt", "--", "/bin/sh", "-c", "cat /etc/marker > marker.txt; test ! -e /usr/bin/gcc")
		if code != 0 {
			t.Fatalf("exit %d, stderr %q", code, stderr)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "marker.txt")); string(got) != "from the image\n" {
			t.Fatalf("marker.txt = %q; want the image's /etc/marker", got)
		}
	})
	f.shutdown()
}

// countFiles counts the regular files below dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	_ = filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error { // never fails: unreadable entries are not counted
		if err == nil && info.Mode().IsRegular() {
			n++
		}
		return nil
	})
	return n
}
