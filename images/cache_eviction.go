package images

import (
	"context"
	"fmt"
)

// evictLocked removes least recently used images that nothing holds, and
// then layers that no image uses, until the cache is within MaxBytes. The
// directories are moved aside under mu; the caller deletes the returned
// paths after unlocking.
func (c *Cache) evictLocked() []trashTree {
	if c.opts.MaxBytes <= 0 || c.bytes <= c.opts.MaxBytes {
		return nil
	}
	var trash []trashTree
	discard := func(dir string, bytes int64) {
		t, err := c.store.discard(dir, bytes)
		if t.path != "" {
			trash = append(trash, t)
		}
		if err != nil {
			c.log.Error("image cache: evict", "dir", dir, "err", err)
		}
	}
	dropUnusedLayers := func() {
		for d, e := range c.layers {
			if e.users == 0 && e.pins == 0 && e.meta != nil {
				delete(c.layers, d)
				c.bytes -= e.meta.cost()
				discard(c.store.layerDir(d), e.meta.cost())
			}
		}
	}
	dropUnusedLayers()
	for c.bytes > c.opts.MaxBytes {
		e, ok := c.images.PopOldest(func(_ string, img *imageEntry) bool { return img.holds > 0 })
		if !ok {
			break // everything left is in use
		}
		victim, img := e.Key, e.Value
		for _, l := range img.rec.Layers {
			c.layers[l].users--
		}
		c.bytes -= img.rec.Bytes
		discard(c.store.imageDir(victim), img.rec.Bytes)
		c.metrics.evictions.Inc()
		c.log.Info("image evicted", "digest", victim)
		dropUnusedLayers()
	}
	c.metrics.cachedBytes.Set(float64(c.bytes))
	return trash
}

// removeTrash hands the trees evictLocked moved aside to the background
// remover: the call that evicted does not wait for their deletion.
func (c *Cache) removeTrash(trees []trashTree) { c.trash.add(trees) }

// waitForTrash waits, before a pull writes anything, until the trees
// waiting for deletion fit the cache's bound beside what it holds, or ctx
// ends. They are still on the disk: eviction moves an image aside in an
// instant but its deletion takes as long as its entries, and pulls that
// went on meanwhile left 971 MB of trash beside a full 1 GiB cache for
// 18 minutes. Evicting more would not help (it only adds to the trash),
// so the pull waits for the remover.
func (c *Cache) waitForTrash(ctx context.Context) error {
	if c.opts.MaxBytes <= 0 {
		return nil
	}
	for {
		pending, changed := c.trash.pendingBytes()
		c.mu.Lock()
		held := c.bytes
		c.mu.Unlock()
		if pending == 0 || held+pending <= c.opts.MaxBytes {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d bytes of evicted images to be deleted (they count toward the cache bound of %d bytes, beside %d cached): %w",
				pending, c.opts.MaxBytes, held, ctx.Err())
		}
	}
}
