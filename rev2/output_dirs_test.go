package rev2

import (
	"fmt"
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// levels returns a path of n names: "a/a/…/x".
func levels(n int) string { return strings.Repeat("a/", n-1) + "x" }

// pathOfBytes returns a clean path exactly n bytes long, of names of at
// most 200 bytes.
func pathOfBytes(n int) string {
	var b strings.Builder
	for b.Len() < n {
		if b.Len() > 0 {
			b.WriteByte('/')
		}
		b.WriteString(strings.Repeat("n", min(200, max(1, n-b.Len()))))
	}
	return b.String()
}

// manyParents returns count sorted output paths, each with levels-1
// parents of its own: (levels-1)*count distinct directories.
func manyParents(count, levels int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = fmt.Sprintf("p%06d/", i) + strings.Repeat("a/", levels-2) + "x"
	}
	return out
}

// The bounds on what the worker creates for a Command's outputs: each
// refused with INVALID_ARGUMENT naming the field, and each accepted at the
// bound itself, so no honest path near it is lost.
func TestCheckCommandBoundsOutputPaths(t *testing.T) {
	perPath := MaxOutputPathLevels - 1 // parents of a path MaxOutputPathLevels deep
	fits := MaxOutputDirs / perPath    // paths whose parents stay within MaxOutputDirs
	if len(pathOfBytes(MaxOutputPathBytes)) != MaxOutputPathBytes || len(levels(7)) != 13 {
		t.Fatal("the test's path helpers are wrong")
	}
	for _, tc := range []struct {
		name  string
		cmd   *repb.Command
		field string // "" = valid
	}{
		{"name of NAME_MAX bytes", &repb.Command{OutputPaths: []string{"d/" + strings.Repeat("x", 255)}}, ""},
		{"name past NAME_MAX", &repb.Command{OutputPaths: []string{"a", "d/" + strings.Repeat("x", 256)}}, "command.output_paths[1]"},
		{"name of 5000 bytes", &repb.Command{OutputPaths: []string{strings.Repeat("x", 5000)}}, "command.output_paths[0]"},
		{"working directory name past NAME_MAX", &repb.Command{WorkingDirectory: strings.Repeat("w", 256)}, "command.working_directory"},
		{"2.0 output file name past NAME_MAX", &repb.Command{OutputFiles: []string{strings.Repeat("x", 256)}}, "command.output_files[0]"},
		{"path of MaxOutputPathBytes", &repb.Command{OutputPaths: []string{pathOfBytes(MaxOutputPathBytes)}}, ""},
		{"path past MaxOutputPathBytes", &repb.Command{OutputPaths: []string{pathOfBytes(MaxOutputPathBytes + 1)}}, "command.output_paths[0]"},
		{"path past MaxOutputPathBytes with the working directory", &repb.Command{
			WorkingDirectory: pathOfBytes(2000), OutputPaths: []string{pathOfBytes(MaxOutputPathBytes - 2000)}}, "command.output_paths[0]"},
		{"2.0 output directory past MaxOutputPathBytes", &repb.Command{OutputDirectories: []string{pathOfBytes(MaxOutputPathBytes + 1)}}, "command.output_directories[0]"},
		{"working directory past MaxOutputPathBytes", &repb.Command{WorkingDirectory: pathOfBytes(MaxOutputPathBytes + 1)}, "command.working_directory"},
		{"path of MaxOutputPathLevels", &repb.Command{OutputPaths: []string{levels(MaxOutputPathLevels)}}, ""},
		{"path past MaxOutputPathLevels", &repb.Command{OutputPaths: []string{levels(MaxOutputPathLevels + 1)}}, "command.output_paths[0]"},
		{"path of 3000 levels", &repb.Command{OutputPaths: []string{levels(3000)}}, "command.output_paths[0]"},
		{"path past MaxOutputPathLevels with the working directory", &repb.Command{
			WorkingDirectory: levels(200), OutputPaths: []string{levels(MaxOutputPathLevels - 199)}}, "command.output_paths[0]"},
		{"working directory past MaxOutputPathLevels", &repb.Command{WorkingDirectory: levels(MaxOutputPathLevels + 1)}, "command.working_directory"},
		{"parents within MaxOutputDirs", &repb.Command{OutputPaths: manyParents(fits, MaxOutputPathLevels)}, ""},
		{"parents past MaxOutputDirs", &repb.Command{OutputPaths: manyParents(fits+1, MaxOutputPathLevels)}, fmt.Sprintf("command.output_paths[%d]", fits)},
		{"2.0 parents past MaxOutputDirs", &repb.Command{OutputFiles: manyParents(fits+5, MaxOutputPathLevels)}, fmt.Sprintf("command.output_files[%d]", fits)},
		{"shared parents are counted once", &repb.Command{OutputPaths: func() []string {
			var out []string
			for i := range MaxOutputDirs + 10 {
				out = append(out, fmt.Sprintf("a/b/f%07d", i))
			}
			return out
		}()}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cmd.Arguments = []string{"true"}
			checkCommandRefusal(t, tc.cmd, tc.field)
		})
	}
}

// OutputDirs lists each directory once, parents first and each subtree
// together, which the worker relies on to make each from its parent's
// descriptor.
func TestOutputDirs(t *testing.T) {
	for _, tc := range []struct {
		cmd  *repb.Command
		want string
	}{
		{&repb.Command{OutputPaths: []string{"a-b/f", "a/b/c/f", "a/b/f", "a/c", "top"}}, "a,a/b,a/b/c,a-b"},
		{&repb.Command{WorkingDirectory: "w/x", OutputPaths: []string{"", "../y/f", "d/e"}}, "w,w/x,w/x/d,w/y"},
		{&repb.Command{WorkingDirectory: "w", OutputFiles: []string{"o/f"}, OutputDirectories: []string{"", "p/d"}}, "w,w/o,w/p"},
		{&repb.Command{OutputPaths: []string{"f"}}, ""},
	} {
		dirs, err := OutputDirs(tc.cmd)
		if got := strings.Join(dirs, ","); err != nil || got != tc.want {
			t.Errorf("OutputDirs(%v) = %q, %v; want %q", tc.cmd, got, err, tc.want)
		}
	}
	_, err := OutputDirs(&repb.Command{OutputPaths: manyParents(MaxOutputDirs/9+1, 10)})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), fmt.Sprint(MaxOutputDirs)) {
		t.Errorf("OutputDirs past MaxOutputDirs: %v, want INVALID_ARGUMENT naming the limit", err)
	}
}
