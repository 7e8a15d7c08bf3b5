package rev2

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

func TestCheckInstanceName(t *testing.T) {
	for _, tc := range []struct {
		name    string
		segment string // what the message must name; "" = valid
	}{
		{"", ""},
		{"main", ""},
		{"team/a/b", ""},
		{"has space", ""},
		{"ünï", ""},
		{"Blobs/BLOBS", ""}, // the keywords are matched exactly
		{"blobsx/xuploads", ""},
		{"a.b/.x/...", ""},
		{"team/blobs/x", `"blobs"`},
		{"a/uploads/b", `"uploads"`},
		{"actions", `"actions"`},
		{"x/actionResults", `"actionResults"`},
		{"operations/1", `"operations"`},
		{"capabilities", `"capabilities"`},
		{"a/compressed-blobs", `"compressed-blobs"`},
		{"/lead", "empty path segment"},
		{"trail/", "empty path segment"},
		{"a//b", "empty path segment"},
		{"/", "empty path segment"},
		{"a/./b", `"."`},
		{"..", `".."`},
		{"a/..", `".."`},
		{strings.Repeat("n", 1024), ""},
		{strings.Repeat("n/", 512) + "n", "1025 bytes"},
		{"team-b/x\ny", "U+000A"},
		{"team-b/\x1b[31mred", "U+001B"},
		{"nul\x00", "U+0000"},
		{"del\x7f", "U+007F"},
		{"c1\u0085next", "U+0085"},
		{"csi\u009b31m", "U+009B"},
		{"bidi\u202Eevil", "U+202E"},
	} {
		t.Run(Quote(tc.name), func(t *testing.T) {
			err := CheckInstanceName(tc.name)
			if tc.segment == "" {
				if err != nil {
					t.Fatalf("CheckInstanceName: %v, want nil", err)
				}
				return
			}
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument || !strings.HasPrefix(st.Message(), "instance_name: "+Quote(tc.name)) ||
				!strings.Contains(st.Message(), tc.segment) {
				t.Fatalf("CheckInstanceName = %v, want INVALID_ARGUMENT naming instance_name, %q and %s", err, tc.name, tc.segment)
			}
		})
	}
}

// Every name Execute and the CAS accept can be read and written through
// ByteStream under the same name, and no other name can: the resource name
// parser applies the same rule to its instance part.
func TestInstanceNamesAgreeWithResourceNames(t *testing.T) {
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte("hello")).String()
	for _, name := range []string{
		"", "main", "team/a/b", "has space", "ünï", "Blobs", "a.b/...",
		"team/blobs/x", "a/uploads/b", "actions", "x/actionResults", "operations", "capabilities", "compressed-blobs",
		"/lead", "trail/", "a//b", "/", "a/./b", "..", ".",
		"uploads/u/blobs/" + d, // would parse, as the default instance with metadata
		strings.Repeat("n", 1024), strings.Repeat("n", 1025), "a\x1bb",
	} {
		prefix := ""
		if name != "" {
			prefix = name + "/"
		}
		valid := CheckInstanceName(name) == nil
		for _, rn := range []struct {
			resource string
			parse    func(string) (digest.ResourceName, error)
		}{
			{prefix + "blobs/" + d, digest.ParseReadResourceName},
			{prefix + "compressed-blobs/zstd/" + d, digest.ParseReadResourceName},
			{prefix + "uploads/u/blobs/" + d, digest.ParseWriteResourceName},
		} {
			parsed, err := rn.parse(rn.resource)
			if got := err == nil && parsed.InstanceName == name; got != valid {
				t.Errorf("%q: CheckInstanceName says valid=%v, but parsing %q gives instance %q, %v",
					name, valid, rn.resource, parsed.InstanceName, err)
			}
		}
	}
}
