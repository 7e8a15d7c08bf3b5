package imagebuild

import (
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/paddock-build/paddock/images/imagetest"
)

// Push sends every role's index to a registry (go-containerregistry's, in
// this process, on loopback) under paddock-ROLE:TAG; pulled back, the tag
// names the same index, with both platforms.
func TestPushToRegistry(t *testing.T) {
	host := imagetest.Serve(t)
	imgs := build(t, testOptions())
	want := digests(t, imgs)
	pushed, err := Push(t.Context(), host+"/team", "v1.2.3", false, imgs)
	if err != nil {
		t.Fatal(err)
	}
	for i, img := range imgs {
		r := img.Role.Name
		if pushed[i].DigestStr() != want[r].String() || !strings.HasSuffix(pushed[i].Context().String(), "/team/paddock-"+r) {
			t.Errorf("pushed %s, want %s/team/paddock-%s@%s", pushed[i], host, r, want[r])
		}
		tag, err := name.NewTag(host + "/team/" + RefName(r, "v1.2.3"))
		if err != nil {
			t.Fatal(err)
		}
		idx, err := remote.Index(tag, remote.WithContext(t.Context()))
		if err != nil {
			t.Fatalf("pull %s: %v", tag, err)
		}
		d, _ := idx.Digest()
		m, _ := idx.IndexManifest()
		if d != want[r] || len(m.Manifests) != 2 {
			t.Errorf("%s pulled back as %s with %d manifests, want %s with 2", tag, d, len(m.Manifests), want[r])
		}
	}
	if _, err := Push(t.Context(), "Not A Registry", "v1", false, imgs); err == nil || !strings.Contains(err.Error(), "storage") {
		t.Errorf("a bad registry name: err %v, want one naming the image", err)
	}
}
