package storage

import (
	"context"
	"os"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
)

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
