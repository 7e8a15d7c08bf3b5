package images

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/paddock-build/paddock/rev2/imageref"
)

// fetch resolves ref at the registry and makes sure its image is cached,
// returning the manifest digest. Concurrent calls for one reference share
// one fetch, which goes on while any of them waits for it and is
// cancelled once none does (flightGroup).
//
// The pull uses tenant's credentials, so concurrent calls of different
// tenants do not share it (they share the download and unpacking of the
// image, which come from one repository). Each success is an access check
// passed: it is remembered for the tenant, or for everyone if the image
// turns out to be public.
func (c *Cache) fetch(ctx context.Context, ref Reference, tenant string) (string, error) {
	key := "ref " + ref.String()
	if c.access.enabled() {
		key = "ref " + tenant + " " + ref.String()
	}
	v, err := c.flights.do(ctx, key, nil, func(ctx context.Context) (any, error) {
		return c.pull(ctx, ref, tenant)
	})
	if err != nil {
		return "", err
	}
	return v.(string), nil
}

func (c *Cache) pull(ctx context.Context, ref Reference, tenant string) (string, error) {
	start := time.Now()
	kc := c.access.keychain(tenant)
	c.mu.Lock()
	if ref.Pinned() {
		if d, ok := c.resolvedLocked(ref); ok && c.hasImageLocked(d) && c.servesLocked(d, ref) {
			c.mu.Unlock()
			return d, nil
		}
	}
	stale, hadStale := c.refs[c.tagKey(ref)]
	c.mu.Unlock()

	if !ref.Pinned() && hadStale {
		// A tag due for a refresh usually still names what it named: ask
		// with a HEAD request before fetching anything.
		if d, err := c.puller.head(ctx, ref, kc); err == nil {
			if m, ok := c.cachedManifest(d); ok && c.serves(m, ref) {
				c.pulledBy(ctx, tenant, kc, ref, m)
				c.metrics.pulls.WithLabelValues("ok").Inc()
				return m, c.recordRef(refRecord{Key: c.tagKey(ref), Digest: m, ResolvedAt: c.opts.Clock.Now()})
			}
		}
	}
	// The image's requests are bound to a lifetime of their own, held by
	// this pull and by the downloads that read from the image, which
	// other pulls may be waiting for (imageSource).
	life := newLifetime(ctx, 0)
	life.holdWhile(ctx)
	f, err := c.puller.fetch(life, ref, kc)
	if err != nil {
		c.metrics.pulls.WithLabelValues("error").Inc()
		if c.access.enabled() && refusedStatus(err) != 0 {
			// This tenant's credentials were refused: the same answer as
			// for a cached image, and no fallback to what the tag meant
			// for another tenant.
			return "", c.access.refusal(tenant, kc, ref, err)
		}
		if !ref.Pinned() && hadStale && c.hasImage(stale.Digest) {
			// The registry is unreachable (or refuses): keep using what the
			// tag last meant, and try the registry again after another
			// interval rather than on every action.
			c.log.Warn("image tag refresh failed; using cached resolution", "ref", ref.String(), "digest", stale.Digest, "err", err)
			c.mu.Lock()
			stale.ResolvedAt = c.opts.Clock.Now()
			c.refs[stale.Key] = stale
			c.mu.Unlock()
			return stale.Digest, nil
		}
		return "", err
	}
	if err := c.cacheFetched(ctx, ref, tenant, kc, imageSource{img: f.img, life: life, platform: f.platform}, f.digest, start); err != nil {
		c.metrics.pulls.WithLabelValues("error").Inc()
		return "", fmt.Errorf("%s: %w", ref, err)
	}
	c.metrics.pulls.WithLabelValues("ok").Inc()
	c.pulledBy(ctx, tenant, kc, ref, f.digest)
	if f.index != "" {
		// What an index digest picks for this platform never changes.
		if err := c.recordRef(refRecord{Key: c.indexKey(f.index), Digest: f.digest, ResolvedAt: c.opts.Clock.Now()}); err != nil {
			return "", err
		}
	}
	if !ref.Pinned() {
		if err := c.recordRef(refRecord{Key: c.tagKey(ref), Digest: f.digest, ResolvedAt: c.opts.Clock.Now()}); err != nil {
			return "", err
		}
	}
	return f.digest, nil
}

// cacheFetched makes sure the image digest that a pull of ref fetched
// (src) is cached, and may be served for ref's repository (origins.go).
func (c *Cache) cacheFetched(ctx context.Context, ref Reference, tenant string, kc authn.Keychain, src imageSource, digest string, start time.Time) error {
	if !c.hasImage(digest) {
		c.log.Info("pulling image", "ref", ref.String(), "digest", digest)
		if err := c.ensureImage(ctx, src, digest, repoKey(ref)); err != nil {
			return err
		}
		c.log.Info("image pulled", "ref", ref.String(), "digest", digest, "seconds", time.Since(start).Seconds())
		c.metrics.pullSeconds.Observe(time.Since(start).Seconds())
	}
	if !c.serves(digest, ref) {
		return c.adoptImage(ctx, src.img, digest, ref, tenant, kc)
	}
	return nil
}

// pulledBy remembers that the registry just let tenant (with kc) read
// the image digest under ref's repository. A pull with credentials does
// not show whether the image is public: one anonymous request tells, so
// that tenants without credentials for it need no check of their own.
func (c *Cache) pulledBy(ctx context.Context, tenant string, kc authn.Keychain, ref Reference, digest string) {
	if !c.access.enabled() {
		return
	}
	c.access.grant(tenant, kc, ref, digest)
	if !c.access.anonymous(kc, ref) {
		at := Reference{Registry: ref.Registry, Repository: ref.Repository, Digest: digest}
		if _, err := c.puller.head(ctx, at, anonymousKeychain); err == nil {
			c.access.grant("", anonymousKeychain, ref, digest)
		}
	}
}

// cachedManifest maps a digest a registry reported — an image manifest, or
// an index whose platform pick is recorded — to a cached image.
func (c *Cache) cachedManifest(d string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.refs[c.indexKey(d)]; ok {
		d = r.Digest
	}
	return d, c.hasImageLocked(d)
}

func (c *Cache) hasImage(digest string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hasImageLocked(digest)
}

func (c *Cache) recordRef(r refRecord) error {
	c.mu.Lock()
	c.refs[r.Key] = r
	dropped := c.refsOverLocked(r.Key)
	c.mu.Unlock()
	c.dropRefFiles(dropped)
	if err := c.store.writeRef(r); err != nil {
		return fmt.Errorf("record %s: %w", r.Key, err)
	}
	return nil
}

// imageSource is an image to cache and what its registry requests are
// bound to. go-containerregistry binds an image's requests to the context
// it was fetched with, so a download that other pulls join reads through
// the first pull's image: life keeps those requests going while any
// download reading from the image lives (each holds it, flightGroup.do),
// and ends them once none does.
type imageSource struct {
	img  v1.Image
	life *lifetime // nil for an image loaded from a file
	// platform is what the index img was picked from says it is for, or
	// nil (checkConfigPlatform).
	platform *v1.Platform
}

// ensureImage unpacks src's layers (those not yet cached) and flattens
// them into the image's rootfs. origin is the repository (repoKey) that
// serves the image, or "" for an image loaded from a file.
//
// Concurrent calls for one image from one origin share the work; a call
// naming another origin does its own. Otherwise a tenant serving another
// tenant's manifest or layers (public data: digests) from its own
// registry, and stalling them or sending the wrong bytes, decided what
// the other tenant's pulls waited for and got. Verified content in the
// cache is shared whatever its origin.
func (c *Cache) ensureImage(ctx context.Context, src imageSource, digest string, origin string) error {
	if !imageref.IsDigest(digest) {
		return fmt.Errorf("unsupported manifest digest %q", digest)
	}
	_, err := c.flights.do(ctx, "image "+origin+" "+digest, src.life, func(ctx context.Context) (any, error) {
		if c.hasImage(digest) {
			return nil, nil
		}
		err := c.buildImage(ctx, src, digest, origin)
		if err != nil {
			// Layers of a refused image (too big in all, say) are used by
			// nothing now: evict them as the bound requires.
			c.mu.Lock()
			trash := c.evictLocked()
			c.mu.Unlock()
			c.removeTrash(trash)
		}
		return nil, err
	})
	return err
}

func (c *Cache) buildImage(ctx context.Context, src imageSource, digest string, origin string) error {
	if err := checkManifest(src.img, c.opts.MaxBytes); err != nil {
		return err
	}
	cfg, err := src.img.ConfigFile()
	if err != nil {
		// Its checks quote what they read (the digest of the bytes, a
		// JSON error's first byte), of wherever the registry redirected.
		return fmt.Errorf("config: %w", &LayerReadError{Err: err})
	}
	if err := checkConfigPlatform(cfg, src.platform); err != nil {
		return err
	}
	layers, diffIDs, err := imageLayers(src.img)
	if err != nil {
		return err
	}
	if err := c.waitForTrash(ctx); err != nil {
		return err
	}
	c.pin(diffIDs, 1)
	defer c.pin(diffIDs, -1)
	metas, err := c.ensureLayers(ctx, src, layers, diffIDs, digest, origin)
	if err == nil {
		err = checkUnpacked(metas, c.opts.MaxBytes)
	}
	if err != nil {
		return err
	}
	rec := imageRecord{Digest: digest, Layers: diffIDs, Config: ImageConfig{
		Env: cfg.Config.Env, WorkingDir: cfg.Config.WorkingDir, User: cfg.Config.User,
	}}
	if origin != "" {
		rec.Origins = []string{origin}
	}
	if err := c.publishImage(ctx, &rec, metas); err != nil {
		return err
	}
	c.mu.Lock()
	if !c.hasImageLocked(digest) {
		c.images.Put(digest, &imageEntry{rec: rec}, 0)
		c.bytes += rec.Bytes
		c.metrics.cachedBytes.Set(float64(c.bytes))
		for _, l := range diffIDs {
			c.layers[l].users++
		}
	}
	c.mu.Unlock()
	return nil
}

// publishImage flattens the layers into a new image directory with its
// record, and moves it into place. It sets rec.Bytes.
func (c *Cache) publishImage(ctx context.Context, rec *imageRecord, metas []*layerMeta) error {
	tmp, err := c.store.newTemp()
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp) // after a successful publish, nothing is left there
	rootfs := filepath.Join(tmp, "rootfs")
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		return err
	}
	flat := make([]flatLayer, len(metas))
	for i, m := range metas {
		flat[i] = flatLayer{root: filepath.Join(c.store.layerDir(m.DiffID), "root"), meta: m}
	}
	// The tree counts toward the bound beside its layers, and while the
	// image is held neither can be evicted: an image whose layers fit but
	// whose tree did not as well (200,000 directories: 0.82 GB each, 1.64
	// GB against 1 GiB) was evicted after every action and pulled again
	// for the next.
	limit, layers := int64(-1), layersCost(metas)
	if c.opts.MaxBytes > 0 {
		limit = max(c.opts.MaxBytes-layers, 0)
	}
	made, err := flatten(ctx, rootfs, flat, limit)
	if errors.Is(err, errTreeOverLimit) {
		return fmt.Errorf("image %s: its layers take %d bytes and its flattened tree at least %d more (%d bytes a directory, %d a link), more than the cache bound of %d bytes",
			rec.Digest, layers, made.cost(), entryCost, linkCost, c.opts.MaxBytes)
	}
	if err != nil {
		return err
	}
	rec.Bytes = made.cost()
	if err := writeJSONAtomic(c.store, filepath.Join(tmp, "image.json"), rec); err != nil {
		return err
	}
	return c.store.publish(tmp, c.store.imageDir(rec.Digest))
}

// hasImageLocked reports whether the image digest is cached.
func (c *Cache) hasImageLocked(digest string) bool {
	_, ok := c.images.Peek(digest)
	return ok
}
