package worker

import "sync"

// holds counts the input roots being built, and keeps the oversized
// entries (each larger than the whole cache) added meanwhile until the
// last is done; they are not counted against the cache's bound, since
// the roots' links hold their disk space anyway. Dropped at its first
// link, such an input named N times in one root was fetched again for
// each name, N uncounted copies, and the names linked at once found its
// file gone: the action failed INTERNAL.
type holds struct {
	mu      sync.Mutex
	n       int
	pending map[cacheKey]string // oversized entries to drop, by their file
}

// Hold marks an input root being built until the returned func is called:
// entries larger than MaxBytes that it links stay in the cache until no
// root is being built, so each of its names links one file.
func (c *FileCache) Hold() (release func()) {
	c.holds.mu.Lock()
	c.holds.n++
	c.holds.mu.Unlock()
	return func() {
		c.holds.mu.Lock()
		c.holds.n--
		var drops map[cacheKey]string
		if c.holds.n == 0 {
			drops, c.holds.pending = c.holds.pending, nil
		}
		c.holds.mu.Unlock()
		for k, p := range drops {
			c.drop(k, p)
		}
	}
}

// postpone records oversized entry k, at p, to drop when no root is being
// built, and reports whether one is; if none is, the caller drops it.
func (h *holds) postpone(k cacheKey, p string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.n == 0 {
		return false
	}
	if h.pending == nil {
		h.pending = map[cacheKey]string{}
	}
	h.pending[k] = p
	return true
}

// has reports whether k is an oversized entry held for the roots being
// built.
func (h *holds) has(k cacheKey) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	_, ok := h.pending[k]
	return ok
}

// bytes is the size of the entries held.
func (h *holds) bytes() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	var n int64
	for k := range h.pending {
		n += k.d.SizeBytes()
	}
	return n
}
