package asset

import "testing"

func TestBazelBefore81(t *testing.T) {
	for _, tc := range []struct {
		tool, version string
		want          bool
	}{
		{"bazel", "4.2.3", true},
		{"bazel", "2.1.0", true},
		{"bazel", "8.0.1", true},
		{"bazel", "7.4.1rc2", true},
		{"bazel", "8.1.0", false},
		{"bazel", "9.0.0", false},
		{"bazel", "", true},
		{"bazel", "no_version", true}, // Debian's bazel-bootstrap 4.2.3
		{"buildstream", "1.6.9", false},
		{"", "", false},
	} {
		if got := bazelBefore81(tc.tool, tc.version); got != tc.want {
			t.Errorf("bazelBefore81(%q, %q) = %v, want %v", tc.tool, tc.version, got, tc.want)
		}
	}
}
