package imagebuild

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Binary is the paddock binary compiled for one platform. It must be
// static (CGO_ENABLED=0): the images have no C library.
type Binary struct {
	Platform v1.Platform
	Data     []byte
}

// Options say what to build. Everything that goes into the images is
// here, so equal Options give equal digests.
type Options struct {
	// Binaries, one per platform; each role's index lists them sorted by
	// platform.
	Binaries []Binary
	// CACerts is the PEM bundle at /etc/ssl/certs/ca-certificates.crt.
	CACerts []byte
	// Created is every file's mtime and the configs' creation time
	// (SOURCE_DATE_EPOCH; the zero time means the Unix epoch, as ko does).
	Created time.Time
	// Version goes in the org.opencontainers.image.version label.
	Version string
	// Roles to build (nil: Roles()).
	Roles []Role
}

// Image is one role's multi-platform index.
type Image struct {
	Role  Role
	Index v1.ImageIndex
}

// Label keys set on every image.
const (
	LabelRole        = "build.paddock.role"
	labelTitle       = "org.opencontainers.image.title"
	labelDescription = "org.opencontainers.image.description"
	labelVersion     = "org.opencontainers.image.version"
	labelSource      = "org.opencontainers.image.source"
	source           = "https://github.com/paddock-build/paddock"
)

// Build assembles one index per role. Layers are shared: the base layer by
// every image, each platform's binary layer by every role.
func Build(o Options) ([]Image, error) {
	if len(o.Binaries) == 0 {
		return nil, errors.New("no binary to build images from")
	}
	if o.Created.IsZero() {
		o.Created = time.Unix(0, 0)
	}
	o.Created = o.Created.UTC()
	roles := o.Roles
	if roles == nil {
		roles = Roles()
	}
	bins := append([]Binary(nil), o.Binaries...)
	sort.Slice(bins, func(i, j int) bool { return bins[i].Platform.String() < bins[j].Platform.String() })
	base, err := layerOf(baseEntries(o.CACerts), o.Created)
	if err != nil {
		return nil, fmt.Errorf("base layer: %w", err)
	}
	apps := make([]v1.Layer, len(bins))
	for i, b := range bins {
		if i > 0 && bins[i-1].Platform.String() == b.Platform.String() {
			return nil, fmt.Errorf("two binaries for %s", b.Platform)
		}
		if b.Platform.OS != "linux" || b.Platform.Architecture == "" {
			return nil, fmt.Errorf("platform %q: want linux/ARCH", b.Platform)
		}
		if apps[i], err = layerOf(binaryEntries(b.Data), o.Created); err != nil {
			return nil, fmt.Errorf("binary layer for %s: %w", b.Platform, err)
		}
	}
	var out []Image
	for _, r := range roles {
		idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
		for i, b := range bins {
			img, err := roleImage(r, b.Platform, base, apps[i], o)
			if err != nil {
				return nil, fmt.Errorf("image %s for %s: %w", r.Name, b.Platform, err)
			}
			p := b.Platform
			idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
		}
		out = append(out, Image{Role: r, Index: idx})
	}
	return out, nil
}

// roleImage is base and app layers under r's config for platform p.
func roleImage(r Role, p v1.Platform, base, app v1.Layer, o Options) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	created := v1.Time{Time: o.Created}
	img, err := mutate.Append(img,
		mutate.Addendum{Layer: base, MediaType: types.OCILayer,
			History: v1.History{Created: created, CreatedBy: "paddock images build: base (CA certificates, passwd, /tmp)", Comment: "base"}},
		mutate.Addendum{Layer: app, MediaType: types.OCILayer,
			History: v1.History{Created: created, CreatedBy: "paddock images build: " + BinaryPath, Comment: "paddock"}})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = created
	cf.OS, cf.Architecture, cf.Variant, cf.OSVersion = p.OS, p.Architecture, p.Variant, p.OSVersion
	cf.Author = ""
	cf.Config = roleConfig(r, o.Version)
	return mutate.ConfigFile(img, cf)
}

// roleConfig is the runtime config of r's images.
func roleConfig(r Role, version string) v1.Config {
	c := v1.Config{
		Entrypoint: append([]string{BinaryPath}, r.Entrypoint...),
		Cmd:        r.Cmd,
		User:       r.User,
		WorkingDir: "/",
		Env:        []string{"PATH=/usr/local/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"},
		Labels: map[string]string{
			LabelRole:        r.Name,
			labelTitle:       "paddock-" + r.Name,
			labelDescription: r.Description,
			labelVersion:     version,
			labelSource:      source,
		},
	}
	if len(r.Ports) > 0 {
		c.ExposedPorts = map[string]struct{}{}
		for _, p := range r.Ports {
			c.ExposedPorts[p] = struct{}{}
		}
	}
	return c
}

// ParsePlatform reads os/arch[/variant].
func ParsePlatform(s string) (v1.Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return v1.Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := v1.Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		p.Variant = parts[2]
	}
	return p, nil
}
