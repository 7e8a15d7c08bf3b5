package storage

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

// TestDiskActionCacheLoweredBoundShrinksIt: an action cache reopened with
// a fifth of the bound it was filled under comes within it on the disk
// (its entries' files within the bound, each shard directory back to a
// block), and still serves the newest entries it kept. Before, its shard
// directories, grown for 20,000 entries, never shrank, and start-up
// removed the evicted entries' files before it returned.
func TestDiskActionCacheLoweredBoundShrinksIt(t *testing.T) {
	const n = 20000
	ctx := context.Background()
	dir := t.TempDir()
	c0, err := NewDiskActionCacheBounded(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	actions := make([]digest.Digest, n)
	base := time.Now().Add(-time.Hour)
	for i := range actions {
		actions[i] = digest.FromBytes(repb.DigestFunction_SHA256, []byte(fmt.Sprint("action ", i)))
		if err := c0.Put(ctx, "main", actions[i], &repb.ActionResult{ExitCode: int32(i)}); err != nil {
			t.Fatal(err)
		}
		// Ages in the order stored (the clock's ticks are coarser than a Put).
		at := base.Add(time.Duration(i) * time.Millisecond)
		if err := os.Chtimes(c0.keyPath(c0.key("main", actions[i])), at, at); err != nil {
			t.Fatal(err)
		}
	}
	<-c0.started
	before, _, _ := costOnDisk(t, c0.acDir)
	bound := before / 5
	c, err := NewDiskActionCacheBounded(dir, bound, nil)
	if err != nil {
		t.Fatal(err)
	}
	block := fsBlockBytes(dir)
	var files, dirs int64
	var ndirs int
	pollUntil(t, "the action cache comes within its lowered bound on the disk", func() bool {
		files, dirs, ndirs = costOnDisk(t, c.acDir)
		return files <= bound && dirs <= int64(ndirs)*diskCost(block, block)
	})
	used, kept := c.Stats()
	t.Logf("filled: %d; bound %d; on disk: files %d, %d directories %d; index: %d bytes in %d entries", before, bound, files, ndirs, dirs, used, kept)
	if kept < n/10 {
		t.Fatalf("kept %d entries of %d; want most of what fits in a fifth", kept, n)
	}
	for i := n - kept; i < n; i++ {
		if r, err := c.Get(ctx, "main", actions[i]); err != nil || r.ExitCode != int32(i) {
			t.Fatalf("entry %d, among the newest %d kept: %v, %v", i, kept, r, err)
		}
	}
}

// TestDiskActionCacheRestartTakesFutureDatesAsUnused: at start-up an entry
// whose file is dated in the future counts as the least recently used,
// not the most, as in the disk CAS (TestDiskRestartTakesFutureDatesAsUnused):
// a clock that was ahead must not keep an entry through every restart.
func TestDiskActionCacheRestartTakesFutureDatesAsUnused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := NewDiskActionCacheBounded(dir, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	result := &repb.ActionResult{StdoutRaw: make([]byte, 100)}
	action := func(s string) digest.Digest { return digest.FromBytes(repb.DigestFunction_SHA256, []byte(s)) }
	putDated := func(d digest.Digest, at time.Time) {
		if err := c.Put(ctx, "main", d, result); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(c.keyPath(c.key("main", d)), at, at); err != nil {
			t.Fatal(err)
		}
	}
	ahead := action("dated 2099")
	putDated(ahead, time.Now().Add(75*365*24*time.Hour))
	past := time.Now().Add(-time.Hour)
	others := []digest.Digest{action("used an hour ago"), action("used an hour ago too")}
	for i, d := range others {
		putDated(d, past.Add(time.Duration(i)*time.Second))
	}
	<-c.started
	size, _ := c.Stats()
	c2, err := NewDiskActionCacheBounded(dir, size*2/3, nil)
	if err != nil {
		t.Fatal(err)
	}
	<-c2.started // the evicted entries' files are removed
	for _, d := range append([]digest.Digest{ahead}, others...) {
		_, err := c2.Get(ctx, "main", d)
		if want := map[bool]codes.Code{true: codes.NotFound, false: codes.OK}[d == ahead]; status.Code(err) != want {
			t.Errorf("after a restart into room for two, Get %v: %v; want %v (only the entry dated in the future evicted)", d, err, want)
		}
	}
}
