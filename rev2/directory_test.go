package rev2

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCheckDirectory(t *testing.T) {
	f := func(names ...string) (out []*repb.FileNode) {
		for _, n := range names {
			out = append(out, &repb.FileNode{Name: n})
		}
		return
	}
	d := func(names ...string) (out []*repb.DirectoryNode) {
		for _, n := range names {
			out = append(out, &repb.DirectoryNode{Name: n})
		}
		return
	}
	l := func(kv ...string) (out []*repb.SymlinkNode) {
		for i := 0; i < len(kv); i += 2 {
			out = append(out, &repb.SymlinkNode{Name: kv[i], Target: kv[i+1]})
		}
		return
	}
	for _, tc := range []struct {
		name   string
		dir    *repb.Directory
		policy SymlinkPolicy
		want   string // "" = valid; else a substring of the message
	}{
		{"empty", &repb.Directory{}, RelativeSymlinksOnly, ""},
		{"sorted", &repb.Directory{Files: f("a", "b"), Directories: d("c"), Symlinks: l("d", "../x")}, RelativeSymlinksOnly, ""},
		{"absolute allowed", &repb.Directory{Symlinks: l("d", "/x")}, AnySymlinks, ""},
		{"unsorted files", &repb.Directory{Files: f("b", "a")}, RelativeSymlinksOnly, `file "pkg/a": comes after "b"`},
		{"duplicate files", &repb.Directory{Files: f("a", "a")}, RelativeSymlinksOnly, `file "pkg/a": the name is used twice`},
		{"unsorted directories", &repb.Directory{Directories: d("b", "a")}, RelativeSymlinksOnly, `directory "pkg/a"`},
		{"file and directory", &repb.Directory{Files: f("a", "x"), Directories: d("x")}, RelativeSymlinksOnly, `"pkg/x": the name is used twice`},
		{"directory and symlink", &repb.Directory{Directories: d("x"), Symlinks: l("x", "y")}, RelativeSymlinksOnly, `"pkg/x": the name is used twice`},
		{"absolute symlink", &repb.Directory{Symlinks: l("s", "/etc/passwd")}, RelativeSymlinksOnly, "DISALLOWED"},
		{"empty target", &repb.Directory{Symlinks: l("s", "")}, AnySymlinks, "target is empty"},
		{"slash in name", &repb.Directory{Files: f("a/b")}, RelativeSymlinksOnly, "contains '/'"},
		{"dot dot", &repb.Directory{Directories: d("..")}, RelativeSymlinksOnly, "not allowed"},
		{"empty name", &repb.Directory{Files: f("")}, RelativeSymlinksOnly, "empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckDirectory(tc.dir, "pkg", tc.policy)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("CheckDirectory: %v", err)
				}
				return
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), tc.want) {
				t.Fatalf("CheckDirectory = %v, want INVALID_ARGUMENT containing %q", err, tc.want)
			}
		})
	}
}
