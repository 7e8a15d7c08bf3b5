package e2e

import (
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/proto"
)

// TestWholeWorkingDirectoryNamedDot: an output directory named "." (how
// BuildStream 2 names the working directory, os.path.relpath of itself)
// is the whole working directory through the whole farm, as "" is, in
// REv2 2.0's output_directories and 2.1's output_paths. The worker
// collected it, but the scheduler refused its result (not a clean
// path), and every such action ran four times and failed UNAVAILABLE.
func TestWholeWorkingDirectoryNamedDot(t *testing.T) {
	_, c := startUpClient(t)
	for _, v21 := range []bool{false, true} {
		cmd := shell("mkdir -p sub && echo built > sub/out.txt")
		if v21 {
			cmd.OutputPaths = []string{"."}
		} else {
			cmd.OutputDirectories = []string{"."}
		}
		cmd.WorkingDirectory = "work"
		r, _, _ := c.run(t.Context(), action{cmd: cmd, root: tree{dirs: []string{"work"}}})
		if len(r.OutputDirectories) != 1 || r.OutputDirectories[0].Path != "." {
			t.Fatalf("v2.1 %v: output directories %v, want the one named \".\"", v21, r.OutputDirectories)
		}
		tr := &repb.Tree{}
		if err := proto.Unmarshal(c.read(t.Context(), r.OutputDirectories[0].TreeDigest), tr); err != nil {
			t.Fatal(err)
		}
		if ds := tr.Root.GetDirectories(); len(ds) != 1 || ds[0].Name != "sub" || len(tr.Children) != 1 || len(tr.Children[0].Files) != 1 ||
			string(c.read(t.Context(), tr.Children[0].Files[0].Digest)) != "built\n" {
			t.Fatalf("v2.1 %v: output tree %v, want the working directory with sub/out.txt", v21, tr)
		}
	}
}
