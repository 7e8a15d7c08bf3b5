package client

import (
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
	os.Mkdir(dir, 0o755)
	os.Symlink(parent, filepath.Join(dir, "up"))
	data := []byte("x")
	d := NewBlob(data).Digest.Proto()
	for _, p := range []string{"../escaped", "/abs/escaped", "up/escaped"} {
		r := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: p, Digest: d, Contents: data}}}
		if err := c.WriteOutputs(t.Context(), dir, r); err == nil {
			t.Errorf("output %q written", p)
		}
	}
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Errorf("something was written next to the working directory: %v", entries)
	}
	r := &repb.ActionResult{OutputFiles: []*repb.OutputFile{{Path: "sub/ok", Digest: d, Contents: data, IsExecutable: true}}}
	if err := c.WriteOutputs(t.Context(), dir, r); err != nil {
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
