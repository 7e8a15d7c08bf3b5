package images

import (
	"os"
	"slices"
	"time"
)

// maxRefs bounds the tag and index resolutions the cache keeps (refs/,
// and c.refs in memory). Each tag an action names is one, and a
// registry answers any tag it likes: a tenant's own registry made 20,000
// of one image, 81 MB of files and the memory to hold them, none of which
// images.max_bytes counted or eviction removed (outside probe). Past it,
// the least recently used go: the next action naming one asks the
// registry again.
const maxRefs = 4096

// useRefLocked notes that the ref of key was looked up now.
func (c *Cache) useRefLocked(key string) {
	if r, ok := c.refs[key]; ok {
		r.usedAt = c.opts.Clock.Now()
		c.refs[key] = r
	}
}

// refsOverLocked forgets the least recently used refs past maxRefs,
// never keep, and returns their keys, whose files the caller removes
// (dropRefFiles) once mu is released. A ref's use is its last lookup in
// this process, or its resolution.
func (c *Cache) refsOverLocked(keep string) []string {
	over := len(c.refs) - maxRefs
	if over <= 0 {
		return nil
	}
	type use struct {
		key string
		at  time.Time
	}
	uses := make([]use, 0, len(c.refs))
	for k, r := range c.refs {
		if k == keep {
			continue
		}
		at := r.ResolvedAt
		if r.usedAt.After(at) {
			at = r.usedAt
		}
		uses = append(uses, use{k, at})
	}
	slices.SortFunc(uses, func(a, b use) int { return a.at.Compare(b.at) })
	var dropped []string
	for _, u := range uses[:min(over, len(uses))] {
		delete(c.refs, u.key)
		dropped = append(dropped, u.key)
	}
	return dropped
}

// dropRefFiles removes the files of the refs of keys.
func (c *Cache) dropRefFiles(keys []string) {
	for _, k := range keys {
		if err := os.Remove(c.store.refPath(k)); err != nil && !os.IsNotExist(err) {
			c.log.Warn("image cache: remove a tag's resolution", "key", k, "error", err)
		}
	}
}
