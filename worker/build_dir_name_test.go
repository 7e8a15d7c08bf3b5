package worker

import (
	"strings"
	"testing"
)

// TestBuildDirNameIsOnePathElement: whatever a client names its
// operation, the build directory's name is one path element of at most 64
// safe bytes, taken from the end of the name (where a scheduler's unique
// part is).
func TestBuildDirNameIsOnePathElement(t *testing.T) {
	for _, c := range []struct{ op, want string }{
		{"operations/3f9a-11", "operations_3f9a-11"},
		{"../../etc/passwd", ".._.._etc_passwd"},
		{"t/\x00\n é", "t______"}, // é is two bytes
		{strings.Repeat("x", 100) + "/end", strings.Repeat("x", 60) + "_end"},
	} {
		if got := dirName(c.op); got != c.want {
			t.Errorf("dirName(%q) = %q, want %q", c.op, got, c.want)
		}
	}
}
