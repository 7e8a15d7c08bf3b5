package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// LoadedImage reports one image that Load put in the cache.
type LoadedImage struct {
	Digest string      // manifest digest: docker://REGISTRY/REPO@Digest finds it
	Names  []Reference // tags the archive gave it, now resolved to Digest
	// Ignored are the names the archive gave it that are not full tag
	// references (REGISTRY/REPO:TAG), such as an OCI layout's bare
	// "v1.2" or "paddock-storage:dev": no action's container-image can
	// name them, so they are not recorded.
	Ignored []string
}

// Load imports images from an OCI image layout directory or a `docker save`
// tarball, for workers that cannot reach a registry. Each image goes
// through the same unpacking and verification as a pull. Tags named in the
// archive are recorded as resolved now; when they are due for a refresh and
// the registry cannot be reached, the loaded image keeps being used.
func (c *Cache) Load(ctx context.Context, path string) ([]LoadedImage, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	var out []LoadedImage
	if info.IsDir() {
		out, err = c.loadLayout(ctx, path)
	} else {
		out, err = c.loadTarball(ctx, path)
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", path, err)
	}
	return out, nil
}

// Annotations that name an image in an OCI layout: containerd and
// `docker save` write the full name in the first, the OCI one is often
// just a tag.
const (
	annotationContainerdName = "io.containerd.image.name"
	annotationRefName        = "org.opencontainers.image.ref.name"
)

func (c *Cache) loadLayout(ctx context.Context, dir string) ([]LoadedImage, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("not an OCI image layout: %w", err)
	}
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var out []LoadedImage
	for _, d := range m.Manifests {
		src := imageSource{}
		digest := d.Digest.String()
		switch {
		case d.MediaType.IsIndex():
			child, err := idx.ImageIndex(d.Digest)
			if err != nil {
				return nil, err
			}
			if err := checkDigest("index", child.RawManifest, d.Digest); err != nil {
				return nil, err
			}
			var picked v1.Descriptor
			src.img, picked, err = selectPlatform(child, c.puller.platform)
			if err != nil {
				return nil, fmt.Errorf("index %s: %w", d.Digest, err)
			}
			digest, src.platform = picked.Digest.String(), picked.Platform
		case d.MediaType.IsImage():
			src.img, err = idx.Image(d.Digest)
			if err != nil {
				return nil, err
			}
		default:
			continue
		}
		if err := checkLayoutImage(src.img, digest); err != nil {
			return nil, err
		}
		var names []string
		for _, k := range []string{annotationContainerdName, annotationRefName} {
			if v := d.Annotations[k]; v != "" {
				names = append(names, v)
			}
		}
		li, err := c.loadImage(ctx, src, digest, names)
		if err != nil {
			return nil, err
		}
		if digest != d.Digest.String() {
			if err := c.recordRef(refRecord{Key: c.indexKey(d.Digest.String()), Digest: digest, ResolvedAt: c.opts.Clock.Now()}); err != nil {
				return nil, err
			}
		}
		out = append(out, li)
	}
	if len(out) == 0 {
		return nil, errors.New("no image in layout")
	}
	return out, nil
}

func (c *Cache) loadTarball(ctx context.Context, path string) ([]LoadedImage, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(path) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("not a docker save tarball (give an OCI layout as a directory): %w", err)
	}
	var out []LoadedImage
	for i, d := range manifest {
		var tag *name.Tag
		if len(d.RepoTags) > 0 {
			t, err := name.NewTag(d.RepoTags[0])
			if err != nil {
				return nil, fmt.Errorf("image %d: %w", i, err)
			}
			tag = &t
		} else if len(manifest) > 1 {
			return nil, fmt.Errorf("image %d has no tag in a multi-image tarball", i)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return nil, fmt.Errorf("image %d: %w", i, err)
		}
		h, err := img.Digest()
		if err != nil {
			return nil, err
		}
		li, err := c.loadImage(ctx, imageSource{img: img}, h.String(), d.RepoTags)
		if err != nil {
			return nil, err
		}
		out = append(out, li)
	}
	return out, nil
}

// loadImage caches src's image and records the names it was given that parse as
// full tag references; other names are ignored.
func (c *Cache) loadImage(ctx context.Context, src imageSource, digest string, names []string) (LoadedImage, error) {
	if err := c.ensureImage(ctx, src, digest, ""); err != nil {
		return LoadedImage{}, fmt.Errorf("image %s: %w", digest, err)
	}
	li := LoadedImage{Digest: digest}
	for _, n := range names {
		t, err := name.NewTag(n, name.StrictValidation)
		if err != nil {
			li.Ignored = append(li.Ignored, n)
			continue
		}
		ref := Reference{Registry: t.RegistryStr(), Repository: t.RepositoryStr(), Tag: t.TagStr()}
		if err := c.recordRef(refRecord{Key: c.tagKey(ref), Digest: digest, ResolvedAt: c.opts.Clock.Now()}); err != nil {
			return LoadedImage{}, err
		}
		li.Names = append(li.Names, ref)
	}
	c.log.Info("image loaded", "digest", digest, "names", len(li.Names), "ignored", li.Ignored)
	return li, nil
}

// checkLayoutImage checks that img's manifest hashes to digest and its
// config to what the manifest names. An OCI layout is read by file name,
// and go-containerregistry checks nothing of what it reads there: a
// layout naming the digest of another image, with a manifest and config
// of its own, was cached as that image, and every action naming the
// digest on any registry ran in the forgery (outside probe). A pull
// checks both (the registry's bytes against their digests); the layers
// are checked against the config's diffIDs either way.
func checkLayoutImage(img v1.Image, digest string) error {
	want, err := v1.NewHash(digest)
	if err != nil {
		return err
	}
	if err := checkDigest("manifest", img.RawManifest, want); err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("manifest %s: %w", digest, err)
	}
	return checkDigest("config of "+digest, img.RawConfigFile, m.Config.Digest)
}

// checkDigest checks that the bytes raw returns hash to want.
func checkDigest(what string, raw func() ([]byte, error), want v1.Hash) error {
	b, err := raw()
	if err != nil {
		return fmt.Errorf("%s %s: %w", what, want, err)
	}
	got, _, err := v1.SHA256(bytes.NewReader(b))
	if err != nil {
		return err
	}
	if want.Algorithm != "sha256" || got != want {
		return fmt.Errorf("%s %s: its bytes hash to %s, not the digest the layout gives them", what, want, got)
	}
	return nil
}
