package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"
)

// fetch resolves ref at the registry and makes sure its image is cached,
// returning the manifest digest. Concurrent calls for one reference share
// one fetch, which is not cancelled when one of its callers gives up.
//
// The pull uses tenant's credentials, so concurrent calls of different
// tenants do not share it (they share the unpacking of the image). Each
// success is an access check passed: it is remembered for the tenant, or
// for everyone if the image turns out to be public.
func (c *Cache) fetch(ctx context.Context, ref Reference, tenant string) (string, error) {
	key := "ref " + ref.String()
	if c.access.enabled() {
		key = "ref " + tenant + " " + ref.String()
	}
	ch := c.flights.DoChan(key, func() (any, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.opts.PullTimeout)
		defer cancel()
		return c.pull(ctx, ref, tenant)
	})
	select {
	case <-ctx.Done():
		return "", ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return "", r.Err
		}
		return r.Val.(string), nil
	}
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
	stale, hadStale := c.refs[tagKey(ref)]
	c.mu.Unlock()

	if !ref.Pinned() && hadStale {
		// A tag due for a refresh usually still names what it named: ask
		// with a HEAD request before fetching anything.
		if d, err := c.puller.head(ctx, ref, kc); err == nil {
			if m, ok := c.cachedManifest(d); ok && c.serves(m, ref) {
				c.pulledBy(ctx, tenant, kc, ref, m)
				c.metrics.pulls.WithLabelValues("ok").Inc()
				return m, c.recordRef(refRecord{Key: tagKey(ref), Digest: m, ResolvedAt: c.opts.Clock.Now()})
			}
		}
	}
	f, err := c.puller.fetch(ctx, ref, kc)
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
	if !c.hasImage(f.digest) {
		c.log.Info("pulling image", "ref", ref.String(), "digest", f.digest)
		if err := c.ensureImage(ctx, f.img, f.digest, repoKey(ref)); err != nil {
			c.metrics.pulls.WithLabelValues("error").Inc()
			return "", fmt.Errorf("%s: %w", ref, err)
		}
		c.log.Info("image pulled", "ref", ref.String(), "digest", f.digest, "seconds", time.Since(start).Seconds())
		c.metrics.pullSeconds.Observe(time.Since(start).Seconds())
	}
	if !c.serves(f.digest, ref) {
		if err := c.adoptImage(ctx, f.img, f.digest, ref, tenant, kc); err != nil {
			c.metrics.pulls.WithLabelValues("error").Inc()
			return "", fmt.Errorf("%s: %w", ref, err)
		}
	}
	c.metrics.pulls.WithLabelValues("ok").Inc()
	c.pulledBy(ctx, tenant, kc, ref, f.digest)
	if f.index != "" {
		// What an index digest picks for this platform never changes.
		if err := c.recordRef(refRecord{Key: f.index, Digest: f.digest, ResolvedAt: c.opts.Clock.Now()}); err != nil {
			return "", err
		}
	}
	if !ref.Pinned() {
		if err := c.recordRef(refRecord{Key: tagKey(ref), Digest: f.digest, ResolvedAt: c.opts.Clock.Now()}); err != nil {
			return "", err
		}
	}
	return f.digest, nil
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
	if r, ok := c.refs[d]; ok {
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
	c.mu.Unlock()
	if err := c.store.writeRef(r); err != nil {
		return fmt.Errorf("record %s: %w", r.Key, err)
	}
	return nil
}

// ensureImage unpacks img's layers (those not yet cached) and flattens them
// into the image's rootfs. origin is the repository (repoKey) that serves
// img, or "" for an image loaded from a file.
func (c *Cache) ensureImage(ctx context.Context, img v1.Image, digest string, origin string) error {
	if !digestPattern.MatchString(digest) {
		return fmt.Errorf("unsupported manifest digest %q", digest)
	}
	_, err, _ := c.flights.Do("image "+digest, func() (any, error) {
		if c.hasImage(digest) {
			return nil, nil
		}
		err := c.buildImage(ctx, img, digest, origin)
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

func (c *Cache) buildImage(ctx context.Context, img v1.Image, digest string, origin string) error {
	if err := checkManifest(img, c.opts.MaxBytes); err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if cfg.OS != "" && cfg.OS != "linux" {
		return fmt.Errorf("image is for %s, not linux", cfg.OS)
	}
	layers, diffIDs, err := imageLayers(img)
	if err != nil {
		return err
	}
	c.pin(diffIDs, 1)
	defer c.pin(diffIDs, -1)
	metas, err := c.ensureLayers(ctx, layers, diffIDs, digest, origin)
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

// imageLayers returns img's layers and their diffIDs (layerDiffIDs).
func imageLayers(img v1.Image) ([]v1.Layer, []string, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, nil, fmt.Errorf("layers: %w", err)
	}
	diffIDs, err := layerDiffIDs(layers)
	if err != nil {
		return nil, nil, err
	}
	return layers, diffIDs, nil
}

// layerDiffIDs returns the layers' diffIDs, each checked to be a digest we
// can name a directory after.
func layerDiffIDs(layers []v1.Layer) ([]string, error) {
	diffIDs := make([]string, len(layers))
	for i, l := range layers {
		h, err := l.DiffID()
		if err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		diffIDs[i] = h.String()
		if !digestPattern.MatchString(diffIDs[i]) {
			return nil, fmt.Errorf("layer %d: unsupported diffID %q", i, diffIDs[i])
		}
	}
	return diffIDs, nil
}

// ensureLayers fetches and unpacks the image's layers, three at a time.
// A layer already cached must have been served by origin too (proveLayer).
func (c *Cache) ensureLayers(ctx context.Context, layers []v1.Layer, diffIDs []string, digest string, origin string) ([]*layerMeta, error) {
	var total int64
	for _, l := range layers {
		if n, err := l.Size(); err == nil {
			total += n
		}
	}
	c.log.Info("unpacking image", "image", digest, "layers", len(layers), "compressedBytes", total)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	metas := make([]*layerMeta, len(layers))
	for i, l := range layers {
		g.Go(func() error {
			m, err := c.ensureLayer(gctx, l, diffIDs[i], origin)
			if err == nil {
				err = c.proveLayer(gctx, l, diffIDs[i], origin)
			}
			if err != nil {
				return fmt.Errorf("layer %d/%d %s: %w", i+1, len(layers), diffIDs[i], err)
			}
			n, _ := l.Size()
			c.log.Info("image layer ready", "image", digest, "layer", i+1, "layers", len(layers),
				"diffID", diffIDs[i], "compressedBytes", n, "unpackedBytes", m.Size)
			metas[i] = m
			return nil
		})
	}
	return metas, g.Wait()
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
	made, err := flatten(ctx, rootfs, flat)
	if err != nil {
		return err
	}
	rec.Bytes = made.cost()
	if err := writeJSONAtomic(c.store, filepath.Join(tmp, "image.json"), rec); err != nil {
		return err
	}
	return c.store.publish(tmp, c.store.imageDir(rec.Digest))
}

// pin protects layers from eviction while an image is assembled from them.
func (c *Cache) pin(diffIDs []string, delta int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range diffIDs {
		e := c.layers[d]
		if e == nil {
			e = &layerEntry{}
			c.layers[d] = e
		}
		e.pins += delta
		if e.pins == 0 && e.meta == nil {
			delete(c.layers, d) // never unpacked (the pull failed)
		}
	}
}

// ensureLayer unpacks one layer into the cache unless it is there already.
func (c *Cache) ensureLayer(ctx context.Context, l v1.Layer, diffID string, origin string) (*layerMeta, error) {
	v, err, _ := c.flights.Do("layer "+diffID, func() (any, error) {
		c.mu.Lock()
		e := c.layers[diffID]
		c.mu.Unlock()
		if e != nil && e.meta != nil {
			return e.meta, nil
		}
		return c.unpackLayer(ctx, l, diffID, origin)
	})
	if err != nil {
		return nil, err
	}
	return v.(*layerMeta), nil
}

func (c *Cache) unpackLayer(ctx context.Context, l v1.Layer, diffID string, origin string) (*layerMeta, error) {
	tmp, err := c.store.newTemp()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(&progressReader{ctx: ctx, r: rc, log: c.log, diffID: diffID}, h)
	meta, err := c.unpacker.unpack(r, root)
	if err != nil {
		return nil, err
	}
	// Read to the end: the tar's trailing padding belongs to the diffID,
	// and the compressed stream's digest is checked at EOF.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return nil, fmt.Errorf("content has diffID %s, the image config says %s", got, diffID)
	}
	meta.DiffID = diffID
	if origin != "" {
		meta.Origins = []string{origin}
	}
	if err := writeJSONAtomic(c.store, filepath.Join(tmp, "layer.json"), meta); err != nil {
		return nil, err
	}
	if err := c.store.publish(tmp, c.store.layerDir(diffID)); err != nil {
		return nil, err
	}
	if origin != "" {
		if n, err := l.Size(); err == nil {
			c.metrics.pulledBytes.Add(float64(n))
		}
	}
	c.metrics.layers.Inc()
	c.mu.Lock()
	e := c.layers[diffID]
	if e == nil {
		e = &layerEntry{}
		c.layers[diffID] = e
	}
	if e.meta == nil {
		e.meta = meta
		c.bytes += meta.cost()
		c.metrics.cachedBytes.Set(float64(c.bytes))
	}
	c.mu.Unlock()
	return meta, nil
}

// hasImageLocked reports whether the image digest is cached.
func (c *Cache) hasImageLocked(digest string) bool {
	_, ok := c.images.Peek(digest)
	return ok
}
