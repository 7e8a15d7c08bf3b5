package images

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// smallImage is a one-file image whose config says it is for platform.
func smallImage(t *testing.T, platform string) v1.Image {
	return imageOf(t, platform, v1.Config{}, layerOf(t, compression.GZip, file("a", platform, 0o644)))
}

// pullError is the error of pulling repo (of r) with a new cache, or
// fails the test if there is none.
func pullError(t *testing.T, r *testRegistry, repo string) error {
	t.Helper()
	c := newTestCache(t, t.TempDir(), r, nil)
	rf, err := c.Rootfs(context.Background(), r.ref(t, repo))
	if err == nil {
		rf.Release()
		t.Fatalf("%s: pulled, want an error", repo)
	}
	return err
}

// What an image or a registry says reaches an error quoted and cut
// short: a config's "os" of 7 MB made a runner's reply larger than gRPC
// allows (the action was retried four times, pulling each time), and an
// index of 60,000 platforms an error of 18.8 MB.
func TestErrorsQuoteImageStringsShort(t *testing.T) {
	r := newTestRegistry(t)
	img := smallImage(t, "linux/amd64")
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS = strings.Repeat("x", 1<<20)
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	r.push(t, "os:1", img)

	arm := smallImage(t, "linux/arm64")
	var entries []mutate.IndexAddendum
	for i := range 500 {
		entries = append(entries, mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: "linux", Architecture: "arm64", OSVersion: fmt.Sprintf("%03d-%s", i, strings.Repeat("v", 300))}}})
	}
	r.pushIndex(t, "many:1", mutate.AppendManifests(empty.Index, entries...))

	for repo, want := range map[string]string{"os:1": "not linux", "many:1": "and 495 more"} {
		err := pullError(t, r, repo)
		if !strings.Contains(err.Error(), want) || len(err.Error()) > 4096 {
			t.Errorf("%s: error of %d bytes: %.300s...; want one of at most 4 KiB saying %q", repo, len(err.Error()), err, want)
		}
	}
}

// An index entry is used only if the image's config agrees with the
// platform the entry claims.
func TestIndexEntryMustMatchTheConfigsArchitecture(t *testing.T) {
	r := newTestRegistry(t)
	r.pushIndex(t, "lying:1", mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add: smallImage(t, "linux/arm64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}}))
	err := pullError(t, r, "lying:1")
	if !strings.Contains(err.Error(), `"linux/amd64"`) || !strings.Contains(err.Error(), `"arm64"`) {
		t.Fatalf("got %v; want an error naming the index's platform and the config's architecture", err)
	}
}

// An index whose entries are other indexes says so: they are not
// followed.
func TestNestedIndexIsNamed(t *testing.T) {
	r := newTestRegistry(t)
	inner := mutate.AppendManifests(empty.Index, mutate.IndexAddendum{
		Add: smallImage(t, "linux/amd64"), Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}})
	r.pushIndex(t, "nested:1", mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: inner}))
	if err := pullError(t, r, "nested:1"); !strings.Contains(err.Error(), "1 nested index(es), which are not followed") {
		t.Fatalf("got %v; want the nested index named", err)
	}
}

// A manifest larger than any registry stores is refused before it is
// parsed (go-containerregistry reads up to 100 MiB: 90 MB of manifest
// took a runner to 770 MB).
func TestOversizedManifestIsRefused(t *testing.T) {
	r := newTestRegistry(t)
	img := mutate.Annotations(smallImage(t, "linux/amd64"), map[string]string{"pad": strings.Repeat("p", maxManifestBytes)}).(v1.Image)
	r.push(t, "big:1", img)
	if err := pullError(t, r, "big:1"); !strings.Contains(err.Error(), fmt.Sprint("larger than ", maxManifestBytes, " bytes")) {
		t.Fatalf("got %v; want the manifest refused for its size", err)
	}
}
