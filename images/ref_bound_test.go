package images

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/clock"
)

// TestRefsAreBounded: the tag resolutions the cache keeps are bounded
// (maxRefs), in memory and on disk, the least recently used going first,
// so a tag looked up since stays while tags only resolved go; a cache
// reopened with more (an older version kept every one) keeps maxRefs.
// A registry answering any tag made 20,000 ref files of one image, counted
// by nothing (outside probe).
func TestRefsAreBounded(t *testing.T) {
	dir := t.TempDir()
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	c := newTestCache(t, dir, nil, func(o *Options) { o.Clock = clk })
	tag := func(i int) Reference {
		return Reference{Registry: "r.invalid", Repository: "flood", Tag: fmt.Sprint("t", i)}
	}
	record := func(i int) {
		t.Helper()
		clk.Advance(time.Second)
		if err := c.recordRef(refRecord{Key: c.tagKey(tag(i)), Digest: "sha256:" + fmt.Sprintf("%064d", 1), ResolvedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range maxRefs {
		record(i)
	}
	// Tag 0, the oldest resolved, is looked up now (stale or not); then 10
	// more are recorded.
	clk.Advance(time.Second)
	c.mu.Lock()
	c.resolvedLocked(tag(0))
	c.mu.Unlock()
	for i := maxRefs; i < maxRefs+10; i++ {
		record(i)
	}
	files := func() int {
		ents, err := os.ReadDir(filepath.Join(dir, "refs"))
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	c.mu.Lock()
	_, kept0 := c.refs[c.tagKey(tag(0))]
	_, kept1 := c.refs[c.tagKey(tag(1))]
	_, keptLast := c.refs[c.tagKey(tag(maxRefs+9))]
	n := len(c.refs)
	c.mu.Unlock()
	if n != maxRefs || files() != maxRefs {
		t.Fatalf("%d refs in memory and %d files, want %d", n, files(), maxRefs)
	}
	if !kept0 || kept1 || !keptLast {
		t.Errorf("kept tag 0 (used) %v, tag 1 (least recently used) %v, the last recorded %v; want true, false, true", kept0, kept1, keptLast)
	}
	// Files of an older cache past the bound: reopened, it keeps maxRefs.
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		key := c.tagKey(Reference{Registry: "r.invalid", Repository: "older", Tag: fmt.Sprint("t", i)})
		if err := c.store.writeRef(refRecord{Key: key, Digest: "sha256:" + fmt.Sprintf("%064d", 2), ResolvedAt: clk.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	c2 := newTestCache(t, dir, nil, func(o *Options) { o.Clock = clk })
	c2.mu.Lock()
	n = len(c2.refs)
	c2.mu.Unlock()
	if n != maxRefs || files() != maxRefs {
		t.Errorf("reopened with %d ref files: %d in memory and %d files, want %d", maxRefs+20, n, files(), maxRefs)
	}
}
