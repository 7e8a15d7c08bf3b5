package images

// evictLocked removes least recently used images that nothing holds, and
// then layers that no image uses, until the cache is within MaxBytes. The
// directories are moved aside under mu; the caller deletes the returned
// paths after unlocking.
func (c *Cache) evictLocked() []string {
	if c.opts.MaxBytes <= 0 || c.bytes <= c.opts.MaxBytes {
		return nil
	}
	var trash []string
	discard := func(dir string) {
		t, err := c.store.discard(dir)
		if t != "" {
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
				discard(c.store.layerDir(d))
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
		discard(c.store.imageDir(victim))
		c.metrics.evictions.Inc()
		c.log.Info("image evicted", "digest", victim)
		dropUnusedLayers()
	}
	c.metrics.cachedBytes.Set(float64(c.bytes))
	return trash
}

// removeTrash hands the trees evictLocked moved aside to the background
// remover: the call that evicted does not wait for their deletion.
func (c *Cache) removeTrash(paths []string) { c.trash.add(paths) }
