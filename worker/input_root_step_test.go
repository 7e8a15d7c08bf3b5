package worker

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/rev2"
)

// openRoot returns a new empty directory and a descriptor of it, closed
// when the test ends.
func openRoot(t *testing.T) (string, int) {
	t.Helper()
	root := t.TempDir()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return root, fd
}

// dirsUnder lists the directories below root, relative to it.
func dirsUnder(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p != root {
			out = append(out, strings.TrimPrefix(p, root+"/"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// errAfter is a context whose Err says cancelled from its n+1st call on:
// the cancellation lands at a known point of a walk, with no timing.
type errAfter struct {
	context.Context
	n int
}

func (c *errAfter) Err() error {
	if c.n--; c.n < 0 {
		return context.Canceled
	}
	return nil
}

// The working directory and every output's parents are made, each once,
// and a symlink or a file in the way stops only what lies below it.
func TestCreateOutputParents(t *testing.T) {
	root, fd := openRoot(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := &repb.Command{Arguments: []string{"true"}, WorkingDirectory: "w", OutputPaths: []string{
		"../a-b/f", "../a/b/c/f", "../a/b/f", "../file/x/f", "../link/x/f", "d/e/f", "top"}}
	if err := rev2.CheckCommand(cmd); err != nil {
		t.Fatal(err)
	}
	if err := createOutputParents(context.Background(), fd, cmd, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(dirsUnder(t, root), ","), "a,a/b,a/b/c,a-b,w,w/d,w/d/e"; got != want {
		t.Errorf("directories made: %s, want %s", got, want)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("made %v through the symlink, outside the input root", entries)
	}
}

// Cancelled, it stops before the next directory: a Command at the bounds
// (100,000 directories) takes seconds to make, and a cancelled action must
// not hold its slot for them.
func TestCreateOutputParentsStopsWhenCancelled(t *testing.T) {
	root, fd := openRoot(t)
	var paths []string
	for i := range 20 {
		paths = append(paths, fmt.Sprintf("p%02d/a/b/f", i))
	}
	cmd := &repb.Command{OutputPaths: paths} // 60 directories
	err := createOutputParents(&errAfter{context.Background(), 7}, fd, cmd, nil)
	if status.Code(err) != codes.Canceled {
		t.Fatalf("createOutputParents = %v, want CANCELLED", err)
	}
	if made := dirsUnder(t, root); len(made) != 7 {
		t.Errorf("made %d directories after the cancellation at the 8th: %v", len(made), made)
	}
}

// Given a Command past rev2.MaxOutputDirs that did not pass CheckCommand,
// it refuses it before making anything, naming the field.
func TestCreateOutputParentsRefusesPastTheBound(t *testing.T) {
	root, fd := openRoot(t)
	perPath := rev2.MaxOutputPathLevels - 1
	paths := make([]string, rev2.MaxOutputDirs/perPath+1)
	for i := range paths {
		paths[i] = fmt.Sprintf("p%06d/", i) + strings.Repeat("a/", perPath-1) + "x"
	}
	err := createOutputParents(context.Background(), fd, &repb.Command{OutputPaths: paths}, nil)
	want := fmt.Sprintf("command.output_paths[%d]: ", len(paths)-1)
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), want) {
		t.Fatalf("createOutputParents = %v, want INVALID_ARGUMENT starting with %q", err, want)
	}
	if made := dirsUnder(t, root); len(made) != 0 {
		t.Errorf("made %d directories before refusing", len(made))
	}
}

// A failure names the directory relative to the input root and gives the
// errno, never the host path of the build directory.
func TestCreateOutputParentsErrorsNameNoHostPath(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "not-a-directory")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(f, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	err = createOutputParents(context.Background(), fd, &repb.Command{OutputPaths: []string{"a/f"}}, nil)
	st := status.Convert(err)
	if st.Code() != codes.Internal || !strings.Contains(st.Message(), `"a"`) || strings.Contains(st.Message(), dir) {
		t.Fatalf("createOutputParents = %v, want INTERNAL naming \"a\" and not %s", err, dir)
	}
}
