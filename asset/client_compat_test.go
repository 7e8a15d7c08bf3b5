package asset

import "testing"

func TestBazelAtLeast81(t *testing.T) {
	for _, tc := range []struct {
		tool, version string
		want          bool
	}{
		{"bazel", "4.2.3", false},
		{"bazel", "2.1.0", false},
		{"bazel", "8.0.1", false},
		{"bazel", "7.4.1rc2", false},
		{"bazel", "8.1.0", true},
		{"bazel", "8.10.0", true},
		{"bazel", "9.0.0rc2", true},
		{"bazel", "", false},
		{"bazel", "no_version", false}, // Debian's bazel-bootstrap 4.2.3
		{"buildstream", "9.9.9", false},
		{"", "", false},
	} {
		if got := bazelAtLeast81(tc.tool, tc.version); got != tc.want {
			t.Errorf("bazelAtLeast81(%q, %q) = %v, want %v", tc.tool, tc.version, got, tc.want)
		}
	}
}
