package digest

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestResourceNameFunctionSegment: REv2 spells the {digest_function/}
// segment as the lowercase name of a DigestFunction.Value. "unknown"
// names no function, and an uppercase name is reported as a misspelled
// function, not as segments after the size; a lowercase one is accepted
// in reads and writes.
func TestResourceNameFunctionSegment(t *testing.T) {
	h := helloSHA256
	for _, tc := range []struct {
		name, in string
		write    bool
		err      []string // "" for accepted
	}{
		{"unknown on read", "blobs/unknown/" + h + "/5", false, []string{"unknown", "names no digest function"}},
		{"unknown on write", "uploads/u/blobs/unknown/" + h + "/5", true, []string{"unknown", "names no digest function"}},
		{"unknown compressed", "compressed-blobs/zstd/unknown/" + h + "/5", false, []string{"names no digest function"}},
		{"uppercase on read", "blobs/SHA256/" + h + "/5", false, []string{`"SHA256"`, "not lowercase", `"sha256"`}},
		{"mixed case on write", "uploads/u/blobs/Sha256/" + h + "/5", true, []string{`"Sha256"`, "not lowercase"}},
		{"lowercase on read", "blobs/sha256/" + h + "/5", false, nil},
		{"lowercase on write with metadata", "uploads/u/blobs/sha256/" + h + "/5/meta", true, nil},
	} {
		parse := ParseReadResourceName
		if tc.write {
			parse = ParseWriteResourceName
		}
		got, err := parse(tc.in)
		if tc.err == nil {
			if err != nil || got.Digest.Hash() != h {
				t.Errorf("%s: %+v, %v", tc.name, got, err)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("%s: got %+v, %v; want INVALID_ARGUMENT", tc.name, got, err)
			continue
		}
		for _, f := range tc.err {
			if !strings.Contains(status.Convert(err).Message(), f) {
				t.Errorf("%s: message %q does not say %q", tc.name, status.Convert(err).Message(), f)
			}
		}
	}
}
