package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/paddock-build/paddock/internal/lru"
)

// Cache resolves image references to read-only rootfs trees, pulling and
// unpacking what it does not have. It is safe for concurrent use; one
// Cache owns its directory.
//
// Concurrency: mu guards the in-memory index (images, layers, refs,
// bytes). Slow work — registry round trips, unpacking, flattening — runs
// outside mu, collapsed by flights so that concurrent requests for one
// reference, or for one image or one layer from one repository, do the
// work once, for as long as any of them waits (flightGroup).
type Cache struct {
	opts     Options
	log      *slog.Logger
	metrics  *metrics
	store    *store
	puller   *puller
	access   *accessGuard
	allowed  registryList
	unpacker *unpacker
	flights  *flightGroup
	trash    *remover // deletes evicted trees off the evicting call's path
	platform string   // picked from indexes, as os/arch[/variant] (tagKey)
	// metaMu serializes rewrites of image.json and layer.json (origins).
	metaMu sync.Mutex

	mu     sync.Mutex
	images *lru.Set[string, *imageEntry] // by digest, in order of use
	layers map[string]*layerEntry        // by diffID
	refs   map[string]refRecord          // by refRecord.Key (tagKey, indexKey); at most maxRefs
	bytes  int64                         // layers' costs plus images' own Bytes (trash apart: waitForTrash)
	closed bool
}

type imageEntry struct {
	rec   imageRecord
	holds int // live Rootfs values
	// mountPoints is set once Options.MountPoints were made in the tree by
	// this process (the option may have changed since the tree was built).
	mountPoints bool
	// mountDirs counts what actions' mount points made in the tree
	// (Rootfs.MkdirMountPoint).
	mountDirs atomic.Int64
}

type layerEntry struct {
	meta  *layerMeta
	users int // cached images using the layer
	pins  int // images being assembled from the layer
}

// New opens (or creates) the cache in o.Dir, queueing any half-finished
// work a previous process left for deletion in the background, and
// indexing what it completed.
func New(o Options) (*Cache, error) {
	o, platform, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	m := newMetrics()
	p := newPuller(o, platform)
	access, err := newAccessGuard(o, p.head)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	allowed, err := newRegistryList(o.AllowedRegistries)
	if err != nil {
		return nil, err
	}
	s, err := openStore(o.Dir)
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	layers, images, refs, mtimes, err := s.scan()
	if err != nil {
		s.close()
		return nil, fmt.Errorf("images: scan %s: %w", o.Dir, err)
	}
	c := &Cache{
		opts:     o,
		log:      o.Logger,
		metrics:  m,
		store:    s,
		puller:   p,
		access:   access,
		allowed:  allowed,
		unpacker: &unpacker{keepSetuid: o.KeepSetuid, logger: o.Logger},
		flights:  newFlightGroup(o.PullTimeout),
		images:   lru.New[string, *imageEntry](),
		layers:   map[string]*layerEntry{},
		platform: platform.String(),
		trash:    newRemover(o.Logger, o.removeTree),
	}
	c.refs = c.keyedByPlatform(refs)
	c.dropRefFiles(c.refsOverLocked(""))
	// What the previous run left to delete goes in the background: the
	// cache serves at once (openStore).
	c.trash.add(s.leftover)
	for d, meta := range layers {
		c.layers[d] = &layerEntry{meta: meta}
		c.bytes += meta.cost()
	}
	// Least recently used first, so that each Put leaves the newest in
	// front.
	byUse := slices.SortedFunc(maps.Keys(images), func(a, b string) int { return mtimes[a].Compare(mtimes[b]) })
	for _, d := range byUse {
		rec := images[d]
		c.images.Put(d, &imageEntry{rec: rec}, 0)
		c.bytes += rec.Bytes
		for _, l := range rec.Layers {
			c.layers[l].users++
		}
	}
	m.cachedBytes.Set(float64(c.bytes))
	if o.Metrics != nil {
		if err := m.register(o.Metrics); err != nil {
			c.trash.close()
			s.close()
			return nil, fmt.Errorf("images: metrics: %w", err)
		}
	}
	if d := unsearchableAncestor(o.Dir); d != "" {
		c.log.Warn("image cache: sandboxes running as an unprivileged uid cannot reach rootfs trees; make the directory searchable (chmod o+x)",
			"dir", d)
	}
	c.log.Info("image cache opened", "dir", o.Dir, "images", c.images.Len(), "layers", len(c.layers), "bytes", c.bytes)
	return c, nil
}

// unsearchableAncestor returns the first of dir and its ancestors that
// other users cannot search, or "".
func unsearchableAncestor(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return ""
	}
	for d := abs; ; d = filepath.Dir(d) {
		if st, err := os.Stat(d); err == nil && st.Mode().Perm()&0o001 == 0 {
			return d
		}
		if d == filepath.Dir(d) {
			return ""
		}
	}
}

// Close releases the cache directory. Rootfs trees already handed out stay
// on disk; the Cache must not be used afterwards.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.flights.close() // its runs take mu
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trash.close()
	return c.store.close()
}

// Rootfs is RootfsFor with no tenant: the farm-wide credentials.
func (c *Cache) Rootfs(ctx context.Context, ref Reference) (*Rootfs, error) {
	return c.RootfsFor(ctx, ref, "")
}

// RootfsFor returns a hold on the image ref names for an action of
// tenant, pulling it with the tenant's credentials if needed. A cached
// digest reference, or a tag resolved less than RefreshTags ago, costs no
// I/O, unless tenants are configured (Options.Tenants): then the tenant's
// access to the image is checked at the registry, at most once per
// AccessTTL, and a refusal wraps ErrAccessDenied. A registry that
// Options.AllowedRegistries leaves out is refused first, cached or not,
// with ErrRegistryNotAllowed. The caller must Release the result.
func (c *Cache) RootfsFor(ctx context.Context, ref Reference, tenant string) (*Rootfs, error) {
	if !c.allowed.allows(ref.Registry) {
		return nil, fmt.Errorf("%s: registry %s: %w", ref, ref.Registry, ErrRegistryNotAllowed)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errors.New("images: cache is closed")
	}
	d, cached := c.resolvedLocked(ref)
	cached = cached && c.hasImageLocked(d) && c.servesLocked(d, ref)
	c.mu.Unlock()
	if cached {
		if err := c.authorize(ctx, tenant, ref, d); err != nil {
			return nil, err
		}
		c.mu.Lock()
		r := c.holdLocked(d)
		c.mu.Unlock()
		if r != nil {
			c.metrics.lookups.WithLabelValues("hit").Inc()
			return r, nil
		}
	}
	c.metrics.lookups.WithLabelValues("miss").Inc()
	// An image can be evicted between its pull and the hold only if the
	// cache is over its bound with nothing else to evict; try again once.
	for range 2 {
		d, err := c.fetch(ctx, ref, tenant)
		if err != nil {
			return nil, err
		}
		if err := c.authorize(ctx, tenant, ref, d); err != nil {
			return nil, err
		}
		c.mu.Lock()
		r := c.holdLocked(d)
		var trash []trashTree
		if r != nil {
			trash = c.evictLocked()
		}
		c.mu.Unlock()
		c.removeTrash(trash)
		if r != nil {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%s: evicted while being acquired; the cache bound is too small", ref)
}

// authorize returns nil if tenant may use the cached image digest that
// ref resolved to: checks are off, or the registry let the tenant (or
// anyone) read it within AccessTTL, or does so now. Concurrent checks of
// one tenant's access to one image share one request.
func (c *Cache) authorize(ctx context.Context, tenant string, ref Reference, digest string) error {
	if !c.access.enabled() || c.access.allowed(tenant, ref, digest) {
		return nil
	}
	_, err := c.flights.do(ctx, "access "+tenant+" "+repoKey(ref)+"@"+digest, nil, func(ctx context.Context) (any, error) {
		err := c.access.check(ctx, tenant, ref, digest)
		logDecision(c.log, tenant, ref, digest, err)
		switch {
		case err == nil:
			c.metrics.accessChecks.WithLabelValues("allowed").Inc()
		case errors.Is(err, ErrAccessDenied):
			c.metrics.accessChecks.WithLabelValues("denied").Inc()
		default:
			c.metrics.accessChecks.WithLabelValues("error").Inc()
		}
		return nil, err
	})
	return err
}

// resolvedLocked returns the manifest digest ref currently stands for, if
// it is known and, for a tag, fresh.
func (c *Cache) resolvedLocked(ref Reference) (string, bool) {
	if ref.Pinned() {
		if _, ok := c.images.Peek(ref.Digest); ok {
			return ref.Digest, true
		}
		r, ok := c.refs[c.indexKey(ref.Digest)] // the digest of an index
		c.useRefLocked(c.indexKey(ref.Digest))
		return r.Digest, ok
	}
	r, ok := c.refs[c.tagKey(ref)]
	c.useRefLocked(c.tagKey(ref))
	if !ok || c.opts.Clock.Now().Sub(r.ResolvedAt) >= c.opts.RefreshTags {
		return "", false
	}
	return r.Digest, true
}

// What a tag or an index stands for depends on the platform: an index
// picks a manifest per platform, and a tag may name an index. A ref
// record's key is the tag's name or the index's digest, then
// platformSep and the cache's platform. Keys had no platform: a cache
// seeded for another (images pull --platform linux/arm64) served its pick
// to actions of this one, which then could not start their commands.
const platformSep = " for "

// tagKey is the key of what ref, a tag, stands for on c's platform.
func (c *Cache) tagKey(ref Reference) string { return tagName(ref) + platformSep + c.platform }

// indexKey is the key of what the index digest d picks on c's platform.
func (c *Cache) indexKey(d string) string { return d + platformSep + c.platform }

// keyedByPlatform returns refs with each key of a record written before
// keys named a platform given c's: what it recorded was picked for the
// platform of the cache that wrote it, which was this one's unless an
// operator changed images.platform or seeded it for another. Each such
// record is rewritten under its new key (the old one would otherwise
// linger beside it).
func (c *Cache) keyedByPlatform(refs map[string]refRecord) map[string]refRecord {
	out := make(map[string]refRecord, len(refs))
	for k, r := range refs {
		if strings.Contains(k, platformSep) {
			out[k] = r
			continue
		}
		r.Key = k + platformSep + c.platform
		if _, ok := refs[r.Key]; ok {
			continue // recorded anew since
		}
		out[r.Key] = r
		if err := c.store.rekeyRef(k, r); err != nil {
			c.log.Warn("image cache: could not rewrite a ref record under its platform's key", "key", k, "err", err)
		}
	}
	return out
}

// tagName identifies a tag reference across spellings of the same name.
func tagName(ref Reference) string {
	reg := ref.Registry
	if reg == "docker.io" {
		reg = "index.docker.io" // as go-containerregistry and `docker save` spell it
	}
	return reg + "/" + ref.Repository + ":" + ref.Tag
}

// holdLocked takes a hold on a cached image, or returns nil.
func (c *Cache) holdLocked(digest string) *Rootfs {
	img, ok := c.images.Get(digest) // a use: the most recent now
	if !ok {
		return nil
	}
	if !img.mountPoints {
		root := filepath.Join(c.store.imageDir(digest), "rootfs")
		for _, p := range c.opts.MountPoints {
			if err := mkdirMountPoint(root, p, nil); err != nil {
				c.log.Warn("image has no usable mount point", "image", digest, "path", p, "err", err)
			}
		}
		img.mountPoints = true
	}
	if img.holds == 0 {
		c.metrics.imagesInUse.Inc()
	}
	img.holds++
	return &Rootfs{
		Path:      filepath.Join(c.store.imageDir(digest), "rootfs"),
		Digest:    digest,
		Config:    img.rec.Config,
		release:   func() { c.release(img) },
		mountDirs: &img.mountDirs,
	}
}

func (c *Cache) release(img *imageEntry) {
	c.mu.Lock()
	img.holds--
	var trash []trashTree
	if img.holds == 0 {
		c.metrics.imagesInUse.Dec()
		trash = c.evictLocked()
	}
	c.mu.Unlock()
	c.removeTrash(trash)
}
