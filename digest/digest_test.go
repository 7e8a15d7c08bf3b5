package digest

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var helloSHA256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		fn   Function
		hash string
		size int64
		want string // "" means valid
	}{
		{"sha256", repb.DigestFunction_SHA256, helloSHA256, 5, ""},
		{"inferred sha256", repb.DigestFunction_UNKNOWN, helloSHA256, 5, ""},
		{"inferred sha1", repb.DigestFunction_UNKNOWN, strings.Repeat("a", 40), 5, ""},
		{"short", repb.DigestFunction_SHA256, "abc", 5, "has 3 characters"},
		{"uppercase", repb.DigestFunction_SHA256, strings.ToUpper(helloSHA256), 5, "lowercase hexadecimal"},
		{"non-hex", repb.DigestFunction_SHA256, strings.Repeat("z", 64), 5, "lowercase hexadecimal"},
		{"negative size", repb.DigestFunction_SHA256, helloSHA256, -1, "negative"},
		{"unknown length", repb.DigestFunction_UNKNOWN, strings.Repeat("a", 50), 5, "matches no supported"},
		{"unsupported function", repb.DigestFunction_MD5, strings.Repeat("a", 32), 5, "unsupported"},
		{"sha1 length under sha256", repb.DigestFunction_SHA256, strings.Repeat("a", 40), 5, "needs 64"},
	} {
		d, err := New(tc.fn, tc.hash, tc.size)
		if tc.want == "" {
			if err != nil || d.Hash() != tc.hash || d.SizeBytes() != tc.size {
				t.Errorf("%s: New = %v, %v", tc.name, d, err)
			}
			continue
		}
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want INVALID_ARGUMENT containing %q", tc.name, err, tc.want)
		}
	}
}

func TestFromBytesAndEmpty(t *testing.T) {
	d := FromBytes(repb.DigestFunction_SHA256, []byte("hello"))
	if d.Hash() != helloSHA256 || d.SizeBytes() != 5 || d.String() != helloSHA256+"/5" {
		t.Fatalf("FromBytes(hello) = %v", d)
	}
	if !Empty(repb.DigestFunction_SHA256).IsEmpty() || d.IsEmpty() {
		t.Fatal("IsEmpty wrong")
	}
	if _, err := FromProto(0, nil, "action_digest"); err == nil || !strings.Contains(err.Error(), "action_digest") {
		t.Fatalf("FromProto(nil) = %v, want an error naming the field", err)
	}
}

func TestParseResourceNames(t *testing.T) {
	d := MustParse(helloSHA256 + "/5")
	for _, tc := range []struct {
		name, in string
		write    bool
		want     ResourceName
		err      string
	}{
		{"plain read", "blobs/" + helloSHA256 + "/5", false, ResourceName{Digest: d}, ""},
		{"instance with slashes", "a/b/c/blobs/" + helloSHA256 + "/5", false, ResourceName{InstanceName: "a/b/c", Digest: d}, ""},
		{"compressed read", "x/compressed-blobs/zstd/" + helloSHA256 + "/5", false, ResourceName{InstanceName: "x", Compressor: repb.Compressor_ZSTD, Digest: d}, ""},
		{"explicit function", "blobs/sha256/" + helloSHA256 + "/5", false, ResourceName{Digest: d}, ""},
		{"write", "i/uploads/u-1/blobs/" + helloSHA256 + "/5", true, ResourceName{InstanceName: "i", UploadID: "u-1", Digest: d}, ""},
		{"write with metadata", "uploads/u/blobs/" + helloSHA256 + "/5/some/meta", true, ResourceName{UploadID: "u", Digest: d}, ""},
		{"compressed write", "uploads/u/compressed-blobs/zstd/" + helloSHA256 + "/5", true, ResourceName{UploadID: "u", Compressor: repb.Compressor_ZSTD, Digest: d}, ""},
		{"dot-dot", "../blobs/" + helloSHA256 + "/5", false, ResourceName{}, "'..'"},
		{"double slash", "a//blobs/" + helloSHA256 + "/5", false, ResourceName{}, "empty path segment"},
		{"unsupported compressor", "compressed-blobs/brotli/" + helloSHA256 + "/5", false, ResourceName{}, "unsupported compressor"},
		{"uppercase compressor", "compressed-blobs/ZSTD/" + helloSHA256 + "/5", false, ResourceName{}, "unsupported compressor"},
		{"size with plus", "blobs/" + helloSHA256 + "/+5", false, ResourceName{}, "not a decimal"},
		{"trailing on read", "blobs/" + helloSHA256 + "/5/x", false, ResourceName{}, "after {size}"},
		{"read without blobs", "foo/" + helloSHA256 + "/5", false, ResourceName{}, "no blobs/"},
		{"write without uploads", "blobs/" + helloSHA256 + "/5", true, ResourceName{}, "uploads"},
		{"empty", "", false, ResourceName{}, "empty"},
	} {
		parse := ParseReadResourceName
		if tc.write {
			parse = ParseWriteResourceName
		}
		got, err := parse(tc.in)
		if tc.err != "" {
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: err %v, want INVALID_ARGUMENT containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestResourceNameRoundTrip(t *testing.T) {
	d := MustParse(helloSHA256 + "/5")
	for _, rn := range []ResourceName{
		{Digest: d},
		{InstanceName: "a/b", Digest: d},
		{InstanceName: "a", UploadID: "u", Compressor: repb.Compressor_ZSTD, Digest: d},
	} {
		parse := ParseReadResourceName
		if rn.UploadID != "" {
			parse = ParseWriteResourceName
		}
		got, err := parse(rn.String())
		if err != nil || got != rn {
			t.Errorf("round trip of %q: %+v, %v", rn.String(), got, err)
		}
	}
}

// The parsers must never panic, and whatever they accept must be valid and
// render back to a name that parses to the same value.
func FuzzParseResourceName(f *testing.F) {
	for _, s := range []string{
		"blobs/" + helloSHA256 + "/5",
		"a/b/uploads/u/compressed-blobs/zstd/" + helloSHA256 + "/5/meta",
		"x/compressed-blobs/zstd/sha256/" + helloSHA256 + "/0",
		"../blobs//", "uploads/blobs/blobs/1/2",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, s string, write bool) {
		parse := ParseReadResourceName
		if write {
			parse = ParseWriteResourceName
		}
		rn, err := parse(s)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error with code %s: %v", status.Code(err), err)
			}
			return
		}
		if rn.Digest.SizeBytes() < 0 || len(rn.Digest.Hash()) == 0 {
			t.Fatalf("accepted an invalid digest: %+v", rn)
		}
		again, err := parse(rn.String())
		if err != nil || again != rn {
			t.Fatalf("%q parsed to %+v, whose rendering %q parses to %+v, %v", s, rn, rn.String(), again, err)
		}
	})
}

func FuzzNewDigest(f *testing.F) {
	f.Add(helloSHA256, int64(5), int32(1))
	f.Add("ABC", int64(-1), int32(0))
	f.Fuzz(func(t *testing.T, hash string, size int64, fn int32) {
		d, err := New(Function(fn), hash, size)
		if err != nil {
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("error with code %s", status.Code(err))
			}
			return
		}
		if d.SizeBytes() < 0 || hexLen(d.Function()) != len(d.Hash()) {
			t.Fatalf("accepted invalid digest %v", d)
		}
		if d2, err := New(d.Function(), d.Hash(), d.SizeBytes()); err != nil || d2 != d {
			t.Fatalf("not stable: %v %v", d2, err)
		}
	})
}
