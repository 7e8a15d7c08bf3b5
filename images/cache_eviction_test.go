package images

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paddock-build/paddock/internal/clock"
)

func TestTagsRefreshAfterInterval(t *testing.T) {
	r := newTestRegistry(t)
	d1 := r.push(t, "bb:stable", busyboxImage(t, "v1"))
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.Clock = clk; o.RefreshTags = time.Minute })
	get := func() *Rootfs {
		t.Helper()
		rf := r.rootfs(t, c, "bb:stable")
		rf.Release()
		return rf
	}
	if rf := get(); rf.Digest != d1 {
		t.Fatalf("first pull %s, want %s", rf.Digest, d1)
	}
	d2 := r.push(t, "bb:stable", busyboxImage(t, "v2"))
	clk.Advance(59 * time.Second)
	_, m := r.counts()
	if rf := get(); rf.Digest != d1 {
		t.Errorf("tag re-resolved before the interval: %s", rf.Digest)
	}
	if _, m2 := r.counts(); m2 != m {
		t.Errorf("fresh tag asked the registry")
	}
	clk.Advance(2 * time.Second)
	rf := get()
	if rf.Digest != d2 {
		t.Errorf("tag not re-resolved after the interval: %s, want %s", rf.Digest, d2)
	}
	checkBusyboxRootfs(t, rf, "v2")
	// Due again, unchanged: one HEAD request, no manifest download.
	clk.Advance(2 * time.Minute)
	r.mu.Lock()
	gets, all := r.manifestGets, r.manifests
	r.mu.Unlock()
	if rf := get(); rf.Digest != d2 {
		t.Errorf("unchanged tag resolved to %s, want %s", rf.Digest, d2)
	}
	r.mu.Lock()
	if r.manifestGets != gets || r.manifests != all+1 {
		t.Errorf("refresh of an unchanged tag: %d manifest GETs, %d requests; want 0 and 1 HEAD",
			r.manifestGets-gets, r.manifests-all)
	}
	r.mu.Unlock()
	// v1 and v2 share their top layer: it was downloaded once.
	blobs, _ := r.counts()
	for p, n := range blobs {
		if n > 1 {
			t.Errorf("blob %s downloaded %d times", p, n)
		}
	}

	// Registry gone: a stale tag keeps its last resolution.
	r.srv.Close()
	clk.Advance(time.Hour)
	if rf := get(); rf.Digest != d2 {
		t.Errorf("stale tag with registry down: %s, want %s", rf.Digest, d2)
	}
}

func TestEvictionOfUnusedImages(t *testing.T) {
	r := newTestRegistry(t)
	mk := func(tag string) string {
		// ~1 MB of distinct content per image, in one entry.
		return r.push(t, "e:"+tag, imageOf(t, "linux/amd64", v1.Config{},
			layerOf(t, compression.GZip, file("data", strings.Repeat(tag, 1<<20/len(tag)), 0o644))))
	}
	a, b, cc := mk("aaaa"), mk("bbbb"), mk("cccc")
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	reg := prometheus.NewRegistry()
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.MaxBytes = 2*(1<<20+entryCost) + 1000; o.Clock = clk; o.Metrics = reg })
	get := func(tag string) *Rootfs {
		t.Helper()
		clk.Advance(time.Second)
		rf := r.rootfs(t, c, "e:"+tag)
		return rf
	}
	exists := func(d string) bool {
		_, err := os.Stat(c.store.imageDir(d))
		return err == nil
	}
	ra := get("aaaa")
	rb := get("bbbb")
	rb.Release()
	ra.Release() // use is counted from the hold: a stays the least recently used
	rc := get("cccc")
	defer rc.Release()
	if exists(a) == exists(b) || exists(a) {
		t.Errorf("want the least recently used image (a) evicted: a=%v b=%v", exists(a), exists(b))
	}
	if !exists(cc) {
		t.Error("the image just pulled was evicted")
	}
	// Held images are never evicted, even over the bound.
	rb2 := get("bbbb")
	defer rb2.Release()
	ra2 := get("aaaa")
	defer ra2.Release()
	for _, d := range []string{a, b, cc} {
		if !exists(d) {
			t.Errorf("held image %s evicted", d)
		}
	}
	if got := metricValue(t, reg, "paddock_images_evictions_total"); got != 1 {
		t.Errorf("evictions = %v, want 1", got)
	}
	c.mu.Lock()
	layersLeft := len(c.layers)
	c.mu.Unlock()
	if layersLeft != 3 {
		t.Errorf("%d layers cached, want 3", layersLeft)
	}
}

// TestEvictedTreesAreRemovedOffThePath: the call whose image pushes the
// cache over its bound returns without waiting for the evicted tree's
// deletion (an unrelated action's setup waited 52 to 161 s for an
// attacker's trees); the tree goes in the background.
func TestEvictedTreesAreRemovedOffThePath(t *testing.T) {
	r := newTestRegistry(t)
	mk := func(tag string) string {
		return r.push(t, "e:"+tag, imageOf(t, "linux/amd64", v1.Config{},
			layerOf(t, compression.GZip, file("data", strings.Repeat(tag, 1<<20/len(tag)), 0o644))))
	}
	mk("aaaa")
	mk("bbbb")
	gate := newRemoveGate()
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.MaxBytes = 1<<20 + 64<<10; o.removeTree = gate.remove })
	r.rootfs(t, c, "e:aaaa").Release()
	got := make(chan *Rootfs, 1)
	go func() { got <- r.rootfs(t, c, "e:bbbb") }() // evicts a
	select {
	case rb := <-got:
		defer rb.Release()
	case <-time.After(30 * time.Second):
		t.Fatal("the evicting call waited for the deletion")
	}
	if gate.removed.Load() != 0 {
		t.Fatal("deleted before the remover was let go")
	}
	close(gate.open)
	waitUntil(t, "the evicted tree is deleted", func() bool { return gate.removed.Load() > 0 && len(trashDirs(c)) == 0 })
}
