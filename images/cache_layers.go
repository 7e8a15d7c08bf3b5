package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sync/errgroup"

	"github.com/paddock-build/paddock/rev2/imageref"
)

// imageLayers returns img's layers and their diffIDs (layerDiffIDs).
func imageLayers(img v1.Image) ([]v1.Layer, []string, error) {
	if err := checkNoForeignLayers(img); err != nil {
		return nil, nil, err
	}
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
		if !imageref.IsDigest(diffIDs[i]) {
			return nil, fmt.Errorf("layer %d: unsupported diffID %q", i, diffIDs[i])
		}
	}
	return diffIDs, nil
}

// ensureLayers fetches and unpacks the image's layers, three at a time,
// charging what they unpack to one budget (imageBudget). A layer already
// cached must have been served by origin too (proveLayer).
func (c *Cache) ensureLayers(ctx context.Context, src imageSource, layers []v1.Layer, diffIDs []string, digest string, origin string) ([]*layerMeta, error) {
	var total int64
	for _, l := range layers {
		if n, err := l.Size(); err == nil {
			total += n
		}
	}
	c.log.Info("unpacking image", "image", digest, "layers", len(layers), "compressedBytes", total)
	budget := c.newBudget(diffIDs)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(3)
	metas := make([]*layerMeta, len(layers))
	for i, l := range layers {
		g.Go(func() error {
			m, err := c.ensureLayer(gctx, src.life, l, diffIDs[i], origin, budget)
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

// newBudget is the budget of an image of the layers diffIDs: the cache's
// bound less what those already cached take (each counted once), or nil
// without a bound.
func (c *Cache) newBudget(diffIDs []string) *imageBudget {
	if c.opts.MaxBytes <= 0 {
		return nil
	}
	b := &imageBudget{limit: c.opts.MaxBytes}
	seen := map[string]bool{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, d := range diffIDs {
		if e := c.layers[d]; e != nil && e.meta != nil && !seen[d] {
			seen[d] = true
			b.used += e.meta.cost()
		}
	}
	return b
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
// Concurrent calls for one layer from one origin share the download;
// life is what l's requests are bound to (imageSource).
func (c *Cache) ensureLayer(ctx context.Context, life *lifetime, l v1.Layer, diffID string, origin string, budget *imageBudget) (*layerMeta, error) {
	v, err := c.flights.do(ctx, "layer "+origin+" "+diffID, life, func(ctx context.Context) (any, error) {
		c.mu.Lock()
		e := c.layers[diffID]
		c.mu.Unlock()
		if e != nil && e.meta != nil {
			return e.meta, nil
		}
		return c.unpackLayer(ctx, l, diffID, origin, budget)
	})
	if err != nil {
		return nil, err
	}
	return v.(*layerMeta), nil
}

// unpackLayer downloads, verifies and unpacks l into a work directory,
// which it removes whatever happens (its download ended by ctx included),
// and publishes the layer.
func (c *Cache) unpackLayer(ctx context.Context, l v1.Layer, diffID string, origin string, budget *imageBudget) (*layerMeta, error) {
	tmp, err := c.store.newTemp()
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, err
	}
	uncompressed, err := uncompressedLayer(l, origin != "")
	if err != nil {
		// Its checks of a response's headers quote them too
		// ("Content-Length header 31 does not match expected size").
		return nil, &LayerReadError{Err: err}
	}
	defer uncompressed.Close()
	rc := layerReader{uncompressed}
	h := sha256.New()
	r := io.TeeReader(&progressReader{ctx: ctx, r: rc, log: c.log, diffID: diffID}, h)
	meta, err := c.unpacker.unpack(r, root, budget)
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
	return c.recordLayer(meta, origin), nil
}

// recordLayer indexes a layer just published, and returns its record.
// Another origin's download of the same content may have published it
// first (publish keeps the first): then origin, whose content was just
// verified against the diffID too, becomes one of its origins.
func (c *Cache) recordLayer(meta *layerMeta, origin string) *layerMeta {
	c.mu.Lock()
	e := c.layers[meta.DiffID]
	if e == nil {
		e = &layerEntry{}
		c.layers[meta.DiffID] = e
	}
	first := e.meta == nil
	if first {
		e.meta = meta
		c.bytes += meta.cost()
		c.metrics.cachedBytes.Set(float64(c.bytes))
	}
	c.mu.Unlock()
	if !first && origin != "" {
		c.addLayerOrigin(meta.DiffID, origin)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return e.meta
}
