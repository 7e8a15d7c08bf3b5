package images

import "sync"

// imageBudget is what one image's layers may take on disk while they
// unpack: the cache's bound, less what those of its layers already in
// the cache take. Its layers unpack three at a time and each is published
// as it finishes, so every unpack charges each entry and each file here
// before writing it, and the first to go past the bound fails the image.
// Bounding each layer alone by the whole bound (as before) let eight
// layers of a 900 MiB file of zeros each (under 1 MB compressed) put
// 7.35 GB on the disk under a bound of 1 GiB before the image was
// refused. A layer that another image's pull is unpacking is charged to
// that image only; checkUnpacked counts every layer once the image's are
// all there. Safe for concurrent use; a nil budget is unbounded.
type imageBudget struct {
	limit int64 // Options.MaxBytes

	mu   sync.Mutex
	used int64
}

// take charges n bytes, or reports false and charges nothing if they do
// not fit.
func (b *imageBudget) take(n int64) bool {
	if b == nil || n <= 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+n > b.limit {
		return false
	}
	b.used += n
	return true
}
