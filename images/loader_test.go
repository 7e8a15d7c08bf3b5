package images

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// The registry host in these tests does not exist: a loaded image must be
// usable without any network.
const airGappedHost = "registry.invalid"

func rootfsOf(t *testing.T, c *Cache, value string) *Rootfs {
	t.Helper()
	ref, _, err := ParseReference(value)
	if err != nil {
		t.Fatal(err)
	}
	rf, err := c.Rootfs(context.Background(), ref)
	if err != nil {
		t.Fatalf("%s: %v", value, err)
	}
	return rf
}

func TestLoadOCILayout(t *testing.T) {
	img := busyboxImage(t, "layout")
	other := imageOf(t, "linux/arm64", v1.Config{}, layerOf(t, compression.GZip, file("platform", "arm64", 0o644)))
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
	)
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		annotationRefName: airGappedHost + "/tools/bb:1"})); err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		annotationContainerdName: airGappedHost + "/tools/multi:2", annotationRefName: "2"})); err != nil {
		t.Fatal(err)
	}

	c := newTestCache(t, t.TempDir(), nil, nil)
	loaded, err := c.Load(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if len(loaded) != 2 || loaded[0].Digest != want.String() || loaded[1].Digest != want.String() {
		t.Fatalf("loaded %+v, want the amd64 image twice (%s)", loaded, want)
	}
	// The index's bare "2" (an OCI layout's tag alone) names nothing an
	// action can ask for: it is said to be ignored, not dropped silently.
	if len(loaded[0].Ignored) != 0 || len(loaded[1].Ignored) != 1 || loaded[1].Ignored[0] != "2" {
		t.Errorf("ignored names %q and %q; want none and the index's \"2\"", loaded[0].Ignored, loaded[1].Ignored)
	}
	for _, v := range []string{
		"docker://" + airGappedHost + "/tools/bb:1",
		"docker://" + airGappedHost + "/tools/multi:2",
		"docker://" + airGappedHost + "/tools/bb@" + want.String(),
	} {
		rf := rootfsOf(t, c, v)
		checkBusyboxRootfs(t, rf, "layout")
		rf.Release()
	}
	idxDigest, _ := idx.Digest()
	rf := rootfsOf(t, c, "docker://"+airGappedHost+"/any/repo@"+idxDigest.String())
	if rf.Digest != want.String() {
		t.Errorf("index digest resolved to %s, want %s", rf.Digest, want)
	}
	rf.Release()
}

func TestLoadDockerSaveTarball(t *testing.T) {
	img := busyboxImage(t, "tarball")
	tag, err := name.NewTag(airGappedHost + "/tools/bb:3")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bb.tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c := newTestCache(t, dir, nil, nil)
	loaded, err := c.Load(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(loaded) != 1 || len(loaded[0].Names) != 1 || loaded[0].Names[0].String() != "docker://"+airGappedHost+"/tools/bb:3" {
		t.Fatalf("loaded %+v", loaded)
	}
	rf := rootfsOf(t, c, "docker://"+airGappedHost+"/tools/bb:3")
	checkBusyboxRootfs(t, rf, "tarball")
	rf.Release()
	if err := c.Close(); err != nil {
		t.Fatalf("closing the cache before the restart: %v", err)
	}

	// Loaded images survive a restart like pulled ones.
	c2 := newTestCache(t, dir, nil, nil)
	rf = rootfsOf(t, c2, "docker://"+airGappedHost+"/tools/bb@"+loaded[0].Digest)
	checkBusyboxRootfs(t, rf, "tarball")
	rf.Release()
}

func TestLoadRejectsOtherFiles(t *testing.T) {
	c := newTestCache(t, t.TempDir(), nil, nil)
	for _, p := range []string{t.TempDir(), "/etc/hostname", "/does/not/exist"} {
		if _, err := c.Load(context.Background(), p); err == nil {
			t.Errorf("Load(%s) succeeded", p)
		}
	}
}

// TestLoadRefusesALayoutThatLiesAboutDigests: an OCI layout is read by
// file name, so a layout can claim any image's digest for a manifest of
// its own (or keep the manifest and swap its config). Loaded, the forgery
// was cached under the genuine image's digest, and every action naming
// that digest, on any registry, ran in it (outside probe). Each is
// refused, and nothing is cached under the claimed digest.
func TestLoadRefusesALayoutThatLiesAboutDigests(t *testing.T) {
	genuine := imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file("GENUINE", "the real image", 0o644)))
	forged := imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file("FORGED", "not the real image", 0o644)))
	victim, _ := genuine.Digest()
	for _, lie := range []string{"manifest", "config"} {
		t.Run(lie, func(t *testing.T) {
			dir := t.TempDir()
			p, err := layout.Write(dir, empty.Index)
			if err != nil {
				t.Fatal(err)
			}
			img := forged
			if lie == "config" {
				img = genuine // its config's file is swapped below
			}
			if err := p.AppendImage(img); err != nil {
				t.Fatal(err)
			}
			blob := func(h v1.Hash) string { return filepath.Join(dir, "blobs", h.Algorithm, h.Hex) }
			switch lie {
			case "manifest":
				// The forged manifest's file and index entry renamed to
				// the genuine image's digest.
				own, _ := forged.Digest()
				if err := os.Rename(blob(own), blob(victim)); err != nil {
					t.Fatal(err)
				}
				index, err := os.ReadFile(filepath.Join(dir, "index.json"))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "index.json"), bytes.ReplaceAll(index, []byte(own.Hex), []byte(victim.Hex)), 0o644); err != nil {
					t.Fatal(err)
				}
			case "config":
				cfg, _ := genuine.ConfigName()
				raw, _ := forged.RawConfigFile()
				if err := os.WriteFile(blob(cfg), raw, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c := newTestCache(t, t.TempDir(), nil, nil)
			if _, err := c.Load(context.Background(), dir); err == nil || !strings.Contains(err.Error(), "not the digest the layout gives them") {
				t.Fatalf("a layout whose %s is not what its digest names: %v; want it refused", lie, err)
			}
			ref, _, err := ParseReference("docker://" + airGappedHost + "/victim@" + victim.String())
			if err != nil {
				t.Fatal(err)
			}
			if rf, err := c.Rootfs(context.Background(), ref); err == nil {
				rf.Release()
				t.Fatalf("the genuine image's digest is served from the cache after a forged load")
			}
		})
	}
}
