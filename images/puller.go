package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// puller talks to registries. It turns a Reference into a v1.Image and its
// manifest digest; the layers are fetched lazily when the cache reads them.
// go-containerregistry verifies the manifest against a digest reference and
// every blob against its digest; the cache checks each layer's diffID.
//
// A puller holds no credentials: each call brings the keychain of the
// tenant it is made for.
type puller struct {
	insecure map[string]bool
	platform v1.Platform
	remote   []remote.Option
}

func newPuller(o Options, platform v1.Platform) *puller {
	insecure := map[string]bool{}
	for _, h := range o.Insecure {
		insecure[h] = true
	}
	return &puller{
		insecure: insecure,
		platform: platform,
		remote: []remote.Option{
			remote.WithTransport(&httpGuard{next: o.Transport, insecure: insecure, idle: o.ReadIdleTimeout}),
			remote.WithPlatform(platform),
			remote.WithUserAgent("paddock"),
			remote.WithRetryBackoff(remote.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 4}),
			remote.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests,
				http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout),
		},
	}
}

// options are the remote options of one call, with kc's credentials.
func (p *puller) options(ctx context.Context, kc authn.Keychain) []remote.Option {
	return append(slices.Clip(p.remote), remote.WithAuthFromKeychain(kc), remote.WithContext(ctx))
}

// nameRef converts to go-containerregistry's reference. A digest wins over
// a tag when both are given.
func (p *puller) nameRef(ref Reference) (name.Reference, error) {
	var opts []name.Option
	if p.insecure[ref.Registry] {
		opts = append(opts, name.Insecure)
	}
	repo := ref.Registry + "/" + ref.Repository
	if ref.Digest != "" {
		return name.NewDigest(repo+"@"+ref.Digest, opts...)
	}
	return name.NewTag(repo+":"+ref.Tag, opts...)
}

// fetched is what a registry said a reference names.
type fetched struct {
	img    v1.Image
	digest string // the image manifest's digest
	index  string // the digest of the index it was picked from, or ""
	// platform is what that index said the image is for, or nil.
	platform *v1.Platform
}

// fetch resolves ref to an image for the cache's platform. The image's
// requests, now and when its blobs are read, are bound to ctx.
func (p *puller) fetch(ctx context.Context, ref Reference, kc authn.Keychain) (fetched, error) {
	nr, err := p.nameRef(ref)
	if err != nil {
		return fetched{}, fmt.Errorf("%s: %w", ref, err)
	}
	desc, err := remote.Get(nr, p.options(ctx, kc)...)
	if err != nil {
		return fetched{}, fmt.Errorf("%s: %w", ref, err)
	}
	if desc.MediaType.IsIndex() {
		idx, err := desc.ImageIndex()
		if err != nil {
			return fetched{}, fmt.Errorf("%s: %w", ref, err)
		}
		img, d, err := selectPlatform(idx, p.platform)
		if err != nil {
			return fetched{}, fmt.Errorf("%s: %w", ref, err)
		}
		return fetched{img: img, digest: d.Digest.String(), index: desc.Digest.String(), platform: d.Platform}, nil
	}
	img, err := desc.Image()
	if err != nil {
		return fetched{}, fmt.Errorf("%s: %w", ref, err)
	}
	return fetched{img: img, digest: desc.Digest.String()}, nil
}

// head asks only for the digest a tag names now: a HEAD request, cheaper
// than fetching the manifest and not counted by registries that rate-limit
// manifest downloads.
func (p *puller) head(ctx context.Context, ref Reference, kc authn.Keychain) (string, error) {
	nr, err := p.nameRef(ref)
	if err != nil {
		return "", err
	}
	d, err := remote.Head(nr, p.options(ctx, kc)...)
	if err != nil {
		return "", err
	}
	return d.Digest.String(), nil
}

// selectPlatform picks the image for want from an index, and returns it
// with its entry in the index.
func selectPlatform(idx v1.ImageIndex, want v1.Platform) (v1.Image, v1.Descriptor, error) {
	m, err := idx.IndexManifest()
	if err != nil {
		return nil, v1.Descriptor{}, err
	}
	for _, d := range m.Manifests {
		if d.MediaType.IsImage() && d.Platform != nil && d.Platform.Satisfies(want) {
			img, err := idx.Image(d.Digest)
			if err != nil {
				return nil, v1.Descriptor{}, err
			}
			return img, d, nil
		}
	}
	return nil, v1.Descriptor{}, fmt.Errorf("no image for platform %s in index (%s)", want.String(), describeIndex(m.Manifests))
}

// maxListedPlatforms is how many of an index's platforms an error lists:
// an index of 60,000 entries made an error of 18.8 MB.
const maxListedPlatforms = 5

// describeIndex says what an index without the wanted platform has: a
// few of its platforms, how many more, and the entries that are not
// images for a platform (nested indexes are not followed).
func describeIndex(entries []v1.Descriptor) string {
	var listed []string
	var images, nested, other int
	for _, d := range entries {
		switch {
		case d.MediaType.IsImage() && d.Platform != nil:
			if images++; images <= maxListedPlatforms {
				listed = append(listed, QuoteShort(d.Platform.String()))
			}
		case d.MediaType.IsIndex():
			nested++
		default:
			other++
		}
	}
	var parts []string
	if images > 0 {
		has := "has " + strings.Join(listed, ", ")
		if images > len(listed) {
			has += fmt.Sprintf(" and %d more", images-len(listed))
		}
		parts = append(parts, has)
	}
	if nested > 0 {
		parts = append(parts, fmt.Sprintf("%d nested index(es), which are not followed", nested))
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("%d entry(ies) not an image for a platform", other))
	}
	if len(parts) == 0 {
		return "it is empty"
	}
	return strings.Join(parts, "; ")
}

// checkConfigPlatform refuses an image whose config is not for Linux, or
// not for the platform the index it was picked from says (claimed, nil
// for an image named directly): an index entry for linux/amd64 pointing
// at an arm64 image was run, and failed as the command could not start.
func checkConfigPlatform(cfg *v1.ConfigFile, claimed *v1.Platform) error {
	if cfg.OS != "" && cfg.OS != "linux" {
		return fmt.Errorf("image is for %s, not linux", QuoteShort(cfg.OS))
	}
	if claimed != nil && cfg.Architecture != "" && cfg.Architecture != claimed.Architecture {
		return fmt.Errorf("the index lists the image for %s, but its config says it is for architecture %s",
			QuoteShort(claimed.String()), QuoteShort(cfg.Architecture))
	}
	return nil
}

func sha256Hex(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}
