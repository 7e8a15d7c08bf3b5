package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
	"slices"

	"github.com/google/go-containerregistry/pkg/authn"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Origins: the cache is content-addressed, so an image or layer one
// tenant pulled from its private repository is found by digest whatever
// repository another tenant names. A registry's answer about a repository
// it serves says nothing about content it never served: a tenant could
// run a registry that claims any digest (a HEAD answers 200, a forged
// config lists another image's diffIDs). So, with access checks on, an
// image or layer is used for a request only if the repository the request
// names has served its content, verified against its digest: its origins
// (repoKey values, kept in image.json and layer.json). A new repository
// for cached content has to serve every layer again, each hashed to its
// diffID (and dropped) before it becomes an origin. Only then does an
// access check at that repository mean anything.

// servesLocked reports whether the cached image digest may answer a
// request naming ref's repository.
func (c *Cache) servesLocked(digest string, ref Reference) bool {
	if !c.access.enabled() {
		return true
	}
	img, ok := c.images.Peek(digest)
	return ok && slices.Contains(img.rec.Origins, repoKey(ref))
}

func (c *Cache) serves(digest string, ref Reference) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.servesLocked(digest, ref)
}

// adoptImage makes ref's repository an origin of the cached image digest,
// which img (fetched from that repository) describes: every layer it
// names must come from there too.
func (c *Cache) adoptImage(ctx context.Context, img v1.Image, digest string, ref Reference, tenant string, kc authn.Keychain) error {
	layers, diffIDs, err := imageLayers(img)
	if err != nil {
		return err
	}
	origin := repoKey(ref)
	for i, l := range layers {
		if err := c.proveLayer(ctx, l, diffIDs[i], origin); err != nil {
			if refusedStatus(err) != 0 {
				return c.access.refusal(tenant, kc, ref, err)
			}
			return fmt.Errorf("layer %d/%d %s: %w", i+1, len(layers), diffIDs[i], err)
		}
	}
	c.addOrigin(func() (string, any, bool) {
		e, ok := c.images.Peek(digest)
		if !ok || slices.Contains(e.rec.Origins, origin) {
			return "", nil, false
		}
		e.rec.Origins = append(slices.Clip(e.rec.Origins), origin)
		return filepath.Join(c.store.imageDir(digest), "image.json"), e.rec, true
	})
	c.log.Info("image content verified from another repository", "image", digest, "origin", origin)
	return nil
}

// proveLayer makes origin an origin of the cached layer diffID, hashing
// what origin serves for it unless it is one already. Nothing to do for
// loaded images (origin "") or without access checks.
func (c *Cache) proveLayer(ctx context.Context, l v1.Layer, diffID, origin string) error {
	if origin == "" || !c.access.enabled() {
		return nil
	}
	c.mu.Lock()
	e := c.layers[diffID]
	known := e != nil && e.meta != nil && slices.Contains(e.meta.Origins, origin)
	c.mu.Unlock()
	if known {
		return nil
	}
	rc, err := uncompressedLayer(l, true)
	if err != nil {
		return &LayerReadError{Err: err}
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, &progressReader{ctx: ctx, r: layerReader{rc}, log: c.log, diffID: diffID}); err != nil {
		return err
	}
	// The hash of what was read is not for the client: a registry may
	// have redirected the layer anywhere (LayerReadError).
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return &LayerReadError{Err: fmt.Errorf("content has diffID %s, the image config says %s", got, diffID)}
	}
	if n, err := l.Size(); err == nil {
		c.metrics.pulledBytes.Add(float64(n))
	}
	c.addLayerOrigin(diffID, origin)
	return nil
}

// addLayerOrigin makes origin an origin of the cached layer diffID: it
// has just served content that hashed to diffID.
func (c *Cache) addLayerOrigin(diffID, origin string) {
	c.addOrigin(func() (string, any, bool) {
		e := c.layers[diffID]
		if e == nil || e.meta == nil || slices.Contains(e.meta.Origins, origin) {
			return "", nil, false
		}
		m := *e.meta
		m.Origins = append(slices.Clip(m.Origins), origin)
		e.meta = &m
		return filepath.Join(c.store.layerDir(diffID), "layer.json"), m, true
	})
}

// addOrigin applies update under mu and writes the record it returns to
// its file. Writes are serialized by metaMu so that the file ends with
// the last update. A failed write is logged: the origin then has to be
// proven again after a restart.
func (c *Cache) addOrigin(update func() (path string, rec any, changed bool)) {
	c.metaMu.Lock()
	defer c.metaMu.Unlock()
	c.mu.Lock()
	path, rec, changed := update()
	c.mu.Unlock()
	if !changed {
		return
	}
	if err := writeJSONAtomic(c.store, path, rec); err != nil {
		c.log.Warn("image cache: cannot record an origin", "file", path, "err", err)
	}
}
