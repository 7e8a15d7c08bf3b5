package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// Output paths come from the server: one that leaves the directory, or
// leads out through a symlink, is refused and nothing is written outside.
func TestWriteOutputsRefusesEscapes(t *testing.T) {
	c := New(nil, Options{}) // inline contents only: no RPC is made
	parent := t.TempDir()
	dir := filepath.Join(parent, "work")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(parent, filepath.Join(dir, "up")); err != nil {
		t.Fatal(err)
	}
	data := []byte("x")
	d := NewBlob(data).Digest.Proto()
	for _, p := range []string{"../escaped", "/abs/escaped", "up/escaped"} {
		r := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: p, Digest: d, Contents: data}}}
		cmd := &repb.Command{OutputPaths: []string{p}}
		if err := c.WriteOutputs(t.Context(), dir, cmd, r); err == nil {
			t.Errorf("output %q written", p)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("something was written next to the working directory: %v", entries)
	}
	r := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "sub/ok", Digest: d, Contents: data, IsExecutable: true}}}
	if err := c.WriteOutputs(t.Context(), dir, &repb.Command{OutputPaths: []string{"sub/ok"}}, r); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "sub", "ok")); string(got) != "x" {
		t.Errorf("sub/ok = %q", got)
	}
	entries, _ := os.ReadDir(filepath.Join(dir, "sub"))
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".paddock-tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

// Cancelling stops a write between entries: a result of many files is
// not written to the end once the user has pressed Ctrl-C.
func TestWriteOutputsStopsWhenCancelled(t *testing.T) {
	c := New(nil, Options{}) // inline contents only: no RPC is made
	dir := t.TempDir()
	data := []byte("x")
	cmd, r := &repb.Command{}, &repb.ActionResult{}
	for i := range 100 {
		p := fmt.Sprintf("f%03d", i)
		cmd.OutputPaths = append(cmd.OutputPaths, p)
		r.OutputFiles = append(r.OutputFiles, &repb.OutputFile{Path: p, Digest: NewBlob(data).Digest.Proto(), Contents: data})
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.WriteOutputs(ctx, dir, cmd, r); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v; want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("%d files written after cancellation", len(entries))
	}
}

// The temporary file an output is written to has a fresh name: a user's
// file that happens to be called .paddock-tmp-<output> is left alone.
func TestWriteOutputsKeepsFilesNamedLikeTemporaries(t *testing.T) {
	c := New(nil, Options{})
	dir := t.TempDir()
	mine := filepath.Join(dir, ".paddock-tmp-out")
	if err := os.WriteFile(mine, []byte("precious\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data := []byte("x")
	r := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "out", Digest: NewBlob(data).Digest.Proto(), Contents: data}}}
	if err := c.WriteOutputs(t.Context(), dir, &repb.Command{OutputFiles: []string{"out"}}, r); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(mine); string(got) != "precious\n" {
		t.Errorf("%s = %q, %v; want it untouched", mine, got, err)
	}
}
