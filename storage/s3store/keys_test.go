package s3store

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/digest"
)

func TestKeys(t *testing.T) {
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte("abc"))
	if got, want := blobKey("p/", d), "p/cas/sha256/"+d.Hash()+"-3"; got != want {
		t.Errorf("blobKey = %q, want %q", got, want)
	}
	sha1 := digest.FromBytes(repb.DigestFunction_SHA1, []byte("abc"))
	if got, want := blobKey("", sha1), "cas/sha1/"+sha1.Hash()+"-3"; got != want {
		t.Errorf("blobKey = %q, want %q", got, want)
	}
	// Instance names are partitions: distinct names, distinct keys, and
	// never an empty or extra path segment.
	seen := map[string]string{}
	for _, inst := range []string{"", "a", "a/b", "a/", "/a", "tenant", "tenant-a", "ü"} {
		k := actionKey("p/", inst, d)
		if other, dup := seen[k]; dup {
			t.Errorf("instances %q and %q share key %q", inst, other, k)
		}
		seen[k] = inst
		if want := 5; len(strings.Split(k, "/")) != want {
			t.Errorf("instance %q: key %q has %d segments, want %d", inst, k, len(strings.Split(k, "/")), want)
		}
	}
	if got, want := actionKey("", "", d), "ac/i/sha256/"+d.Hash()+"-3"; got != want {
		t.Errorf("actionKey = %q, want %q", got, want)
	}
}

func TestNormalizePrefix(t *testing.T) {
	for in, want := range map[string]string{"": "", "farm": "farm/", "farm/": "farm/", "a/b": "a/b/"} {
		if got, err := NormalizePrefix(in); err != nil || got != want {
			t.Errorf("NormalizePrefix(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"/", "/farm", "a//b", "a/../b", "./a", "//"} {
		if got, err := NormalizePrefix(bad); err == nil {
			t.Errorf("NormalizePrefix(%q) = %q, want an error", bad, got)
		}
	}
}
