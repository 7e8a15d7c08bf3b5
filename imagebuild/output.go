package imagebuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// RefName is the name an image has in the layout and, under a registry
// prefix, when pushed: paddock-ROLE:TAG.
func RefName(role, tag string) string { return "paddock-" + role + ":" + tag }

// WriteLayout writes imgs as an OCI image layout at dir, one index per
// role named RefName in its org.opencontainers.image.ref.name annotation.
// The layout is written beside dir and renamed over it, so a rebuild
// replaces the old one whole and never mixes the two.
func WriteLayout(dir, tag string, imgs []Image) error {
	if err := replaceable(dir); err != nil {
		return err
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(parent, ".layout-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return fmt.Errorf("write layout: %w", err)
	}
	for _, img := range imgs {
		ann := map[string]string{"org.opencontainers.image.ref.name": RefName(img.Role.Name, tag)}
		if err := p.AppendIndex(img.Index, layout.WithAnnotations(ann)); err != nil {
			return fmt.Errorf("write %s to layout: %w", img.Role.Name, err)
		}
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	return os.Rename(tmp, dir)
}

// replaceable refuses a dir WriteLayout would remove that is neither
// absent, nor empty, nor an OCI image layout: a mistyped --out named a
// directory of other files, and it went whole (outside probe).
func replaceable(dir string) error {
	ents, err := os.ReadDir(dir)
	if os.IsNotExist(err) || err == nil && len(ents) == 0 {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		return fmt.Errorf("%s holds files and is not an OCI image layout (no oci-layout file): not replacing it; name a new directory or an old layout", dir)
	}
	return nil
}

// Push sends every image to registry (HOST[:PORT][/PATH]) as
// registry/paddock-ROLE:tag, and returns the pushed references, pinned
// by digest, in the order of imgs. Loopback and private registries are
// spoken to over plain HTTP, as go-containerregistry does; insecure forces
// it for any registry.
func Push(ctx context.Context, registry, tag string, insecure bool, imgs []Image) ([]name.Digest, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	var out []name.Digest
	for _, img := range imgs {
		ref, err := name.NewTag(registry+"/"+RefName(img.Role.Name, tag), opts...)
		if err != nil {
			return nil, fmt.Errorf("push %s: %w", img.Role.Name, err)
		}
		if err := remote.WriteIndex(ref, img.Index, remote.WithContext(ctx)); err != nil {
			return nil, fmt.Errorf("push %s: %w", ref, err)
		}
		d, err := img.Index.Digest()
		if err != nil {
			return nil, err
		}
		out = append(out, ref.Context().Digest(d.String()))
	}
	return out, nil
}

// Digests are the index digests of imgs by role name, what a rebuild must
// reproduce.
func Digests(imgs []Image) (map[string]v1.Hash, error) {
	out := map[string]v1.Hash{}
	for _, img := range imgs {
		d, err := img.Index.Digest()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", img.Role.Name, err)
		}
		out[img.Role.Name] = d
	}
	return out, nil
}
