package images

import (
	"fmt"
	"math"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxConfigBytes bounds an image config blob. The config is read whole
// into memory, and a registry may claim any size for it (a 1 GiB config,
// gzip-encoded to 1 MB on the wire, took 5.9 GB of runner memory); real
// configs are a few kilobytes, their history included.
const maxConfigBytes = 8 << 20

// maxManifestBytes bounds a manifest or an index, read whole into memory
// and parsed (go-containerregistry's own limit is 100 MiB): registries
// refuse to store larger ones (distribution's limit is 4 MiB too), and
// real ones are a few kilobytes.
const maxManifestBytes = 4 << 20

var errManifestTooLarge = fmt.Errorf("larger than %d bytes", maxManifestBytes)

// maxLayers bounds the layers of an image: overlayfs-based runtimes stop
// at 128 too, and flattening does work for every listing of a layer, so
// a manifest listing one small layer thousands of times is refused rather
// than flattened thousands of times.
const maxLayers = 128

// checkManifest refuses, before any blob is downloaded, an image whose
// manifest cannot fit the cache: a config past maxConfigBytes, more than
// maxLayers layers, or compressed layers adding up past maxBytes (when
// positive). Each layer alone is bounded while it unpacks (unpacker), and
// the unpacked total by checkUnpacked.
func checkManifest(img v1.Image, maxBytes int64) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	// A size of -1 is go-containerregistry's "unknown": it then reads
	// the config whole, unbounded (a probe's 1 GiB config took the
	// runner to 2.7 GB). A config is never empty either.
	if m.Config.Size <= 0 || m.Config.Size > maxConfigBytes {
		return fmt.Errorf("config of %d bytes: want 1 to %d bytes", m.Config.Size, maxConfigBytes)
	}
	if len(m.Layers) > maxLayers {
		return fmt.Errorf("image has %d layers, more than %d", len(m.Layers), maxLayers)
	}
	var total int64
	seen := map[v1.Hash]bool{}
	for _, l := range m.Layers {
		if l.Size < 0 {
			return fmt.Errorf("layer %s: negative size %d", l.Digest, l.Size)
		}
		if !seen[l.Digest] {
			seen[l.Digest] = true
			// Saturated, not wrapped: two layers claiming 2^62 bytes
			// each summed to a negative total, under any bound.
			total += min(l.Size, math.MaxInt64/2-total)
		}
	}
	if maxBytes > 0 && total > maxBytes {
		return fmt.Errorf("layers of %d bytes compressed are larger than the cache bound of %d bytes", total, maxBytes)
	}
	return nil
}

// checkUnpacked refuses an image whose unpacked layers (each counted
// once) add up past maxBytes (when positive): it could never be held in
// the cache, and images in use are never evicted. Its flattened tree,
// which counts beside them, is bounded while it is made (publishImage).
func checkUnpacked(metas []*layerMeta, maxBytes int64) error {
	if maxBytes <= 0 {
		return nil
	}
	if total := layersCost(metas); total > maxBytes {
		return fmt.Errorf("layers unpack to %d bytes, more than the cache bound of %d bytes", total, maxBytes)
	}
	return nil
}

// layersCost is what the layers metas take in the cache, each counted
// once however often the image lists it.
func layersCost(metas []*layerMeta) int64 {
	var total int64
	seen := map[string]bool{}
	for _, m := range metas {
		if !seen[m.DiffID] {
			seen[m.DiffID] = true
			total += m.cost()
		}
	}
	return total
}
