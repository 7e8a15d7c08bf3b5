package storage_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// TestDiskActionCacheEvictsLeastRecentlyUsed: past its bound the action
// cache drops the entries least recently read or written, also after a
// restart (the index is rebuilt from the files).
func TestDiskActionCacheEvictsLeastRecentlyUsed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	result := &repb.ActionResult{StdoutRaw: make([]byte, 100)}
	size := entrySize(t, result)
	c, err := storage.NewDiskActionCacheBounded(dir, 3*size, nil)
	if err != nil {
		t.Fatal(err)
	}
	action := func(i int) digest.Digest { return sha(fmt.Sprint("action ", i)) }
	for i := range 3 {
		if err := c.Put(ctx, "main", action(i), result); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Get(ctx, "main", action(0)); err != nil { // 0 is now the most recent
		t.Fatal(err)
	}
	if err := c.Put(ctx, "main", action(3), result); err != nil {
		t.Fatal(err)
	}
	present := func(c *storage.DiskActionCache, i int) bool {
		_, err := c.Get(ctx, "main", action(i))
		if err != nil && status.Code(err) != codes.NotFound {
			t.Fatal(err)
		}
		return err == nil
	}
	if present(c, 1) || !present(c, 0) || !present(c, 2) || !present(c, 3) {
		t.Fatal("want 1 (least recently used) evicted, 0, 2 and 3 kept")
	}
	if bytes, n := c.Stats(); n != 3 || bytes != 3*size {
		t.Fatalf("stats %d bytes, %d entries; want %d and 3", bytes, n, 3*size)
	}
	c2, err := storage.NewDiskActionCacheBounded(dir, 2*size, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, n := c2.Stats(); n != 2 {
		t.Fatalf("after a restart with a smaller bound, %d entries, want 2", n)
	}
}

// entrySize is what one entry of result takes in a DiskActionCache: the
// result's bytes and the entry's header.
func entrySize(t *testing.T, result *repb.ActionResult) int64 {
	c, err := storage.NewDiskActionCacheBounded(t.TempDir(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Put(context.Background(), "main", sha("any"), result); err != nil {
		t.Fatal(err)
	}
	size, _ := c.Stats()
	if size <= int64(proto.Size(result)) {
		t.Fatalf("an entry of a %d-byte result counts %d bytes", proto.Size(result), size)
	}
	return size
}

// TestDiskActionCacheRemovesStrayFiles: at start-up, a file in the action
// cache's tree that is not an entry (the link a crash left beside an entry
// being replaced) is removed, not indexed; entries stay.
func TestDiskActionCacheRemovesStrayFiles(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := storage.NewDiskActionCache(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	result := &repb.ActionResult{ExitCode: 3}
	if err := c.Put(ctx, "main", sha("kept"), result); err != nil {
		t.Fatal(err)
	}
	var entry string
	if err := filepath.WalkDir(filepath.Join(dir, "ac"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			entry = p
		}
		return err
	}); err != nil {
		t.Fatalf("finding the entry's file: %v", err)
	}
	strays := []string{entry + ".tmp-123-7", filepath.Join(filepath.Dir(entry), "notes.txt")}
	for _, p := range strays {
		if err := os.WriteFile(p, []byte("junk"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c2, err := storage.NewDiskActionCache(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, n := c2.Stats(); n != 1 {
		t.Errorf("after a restart, %d entries indexed, want the 1 entry", n)
	}
	if got, err := c2.Get(ctx, "main", sha("kept")); err != nil || got.ExitCode != 3 {
		t.Errorf("entry after restart: %v, %v", got, err)
	}
	for _, p := range strays {
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("stray file %s still there (%v)", p, err)
		}
	}
}

// TestDiskActionCacheDamagedEntriesAreMisses: an entry's file cut short
// anywhere (empty, as a power cut leaves an unsynced file; or at a field's
// end, which still parses), with a byte flipped, or written without the
// header by an earlier version, is NOT_FOUND and removed, never served as
// a result (an empty file parsed as exit 0 with no outputs). Damage is
// logged as an error; an earlier version's entry is not (an upgrade made
// an ERROR line of every old entry's lookup).
func TestDiskActionCacheDamagedEntriesAreMisses(t *testing.T) {
	ctx := context.Background()
	result := &repb.ActionResult{
		OutputFiles: []*repb.OutputFile{{Path: "out", Digest: sha("out").Proto()}},
		ExitCode:    0,
		StdoutRaw:   []byte("hello"),
	}
	raw, err := proto.Marshal(result)
	if err != nil {
		t.Fatal(err)
	}
	action := sha("action")
	entryFile := func(dir string) string {
		files, _ := filepath.Glob(filepath.Join(dir, "ac", "*", "*"))
		if len(files) != 1 {
			t.Fatalf("want one entry file, found %v", files)
		}
		return files[0]
	}
	var logs bytes.Buffer
	fresh := func() (*storage.DiskActionCache, []byte, string) {
		dir := t.TempDir()
		logs.Reset()
		c, err := storage.NewDiskActionCache(dir, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Put(ctx, "main", action, result); err != nil {
			t.Fatal(err)
		}
		p := entryFile(dir)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return c, b, p
	}
	_, whole, _ := fresh()
	damaged := map[string]func([]byte) []byte{"written by an earlier version": func([]byte) []byte { return raw }}
	for n := range len(whole) {
		damaged[fmt.Sprintf("cut to %d bytes", n)] = func(b []byte) []byte { return b[:n] }
	}
	for _, i := range []int{0, 5, len(whole) - 1} {
		damaged[fmt.Sprintf("byte %d flipped", i)] = func(b []byte) []byte { b[i] ^= 1; return b }
	}
	for name, damage := range damaged {
		c, b, p := fresh()
		if err := os.WriteFile(p, damage(b), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := c.Get(ctx, "main", action)
		if status.Code(err) != codes.NotFound {
			t.Fatalf("%s: Get = %v, %v; want NOT_FOUND", name, got, err)
		}
		if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s: the damaged file was not removed", name)
		}
		earlier := name == "written by an earlier version"
		if logged := strings.Contains(logs.String(), "level=ERROR"); logged == earlier {
			t.Errorf("%s: error logged %v, want %v:\n%s", name, logged, !earlier, logs.String())
		}
	}
	c, _, _ := fresh()
	if got, err := c.Get(ctx, "main", action); err != nil || !proto.Equal(got, result) {
		t.Fatalf("a sound entry reads as %v, %v", got, err)
	}
}

// TestDiskActionCacheBoundCountsBlocks: the bound counts the disk each
// entry's file takes, whole blocks and an inode, as the CAS's does: 40,000
// results of 38 bytes counted 1.5 MB and took 161 MiB of disk. 50 tiny
// results under a bound of 40 KiB leave at most 9 files (4 KiB and an
// inode each), whose blocks stay within the bound.
func TestDiskActionCacheBoundCountsBlocks(t *testing.T) {
	dir := t.TempDir()
	c, err := storage.NewDiskActionCacheBounded(dir, 40<<10, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := c.Put(t.Context(), "main", sha(fmt.Sprint("tiny ", i)), &repb.ActionResult{ExitCode: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var files, blocks int64
	if err := filepath.WalkDir(filepath.Join(dir, "ac"), func(p string, de fs.DirEntry, err error) error {
		if err == nil && !de.IsDir() {
			var st syscall.Stat_t
			if syscall.Stat(p, &st) == nil {
				files++
				blocks += st.Blocks * 512
			}
		}
		return err
	}); err != nil {
		t.Fatalf("counting the entries' files: %v", err)
	}
	if _, n := c.Stats(); n > 9 || files != int64(n) || blocks > 40<<10 {
		t.Fatalf("%d entries indexed, %d files taking %d bytes of disk; want at most 9 within 40 KiB", n, files, blocks)
	}
}

// TestDiskActionCacheRefusesAnEntryPastItsBound: a result larger than the
// whole cache's bound is RESOURCE_EXHAUSTED, as the spec says of a cache
// without room for the entry, and the entries there stay. It was
// acknowledged, then evicted at once with every other entry.
func TestDiskActionCacheRefusesAnEntryPastItsBound(t *testing.T) {
	small := &repb.ActionResult{StdoutRaw: make([]byte, 100)}
	c, err := storage.NewDiskActionCacheBounded(t.TempDir(), 4*entrySize(t, small), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := c.Put(t.Context(), "main", sha(fmt.Sprint("small ", i)), small); err != nil {
			t.Fatal(err)
		}
	}
	big := &repb.ActionResult{StdoutRaw: make([]byte, 64<<10)}
	err = c.Put(t.Context(), "main", sha("big"), big)
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "action_cache_max_bytes") {
		t.Fatalf("a result past the whole bound: %v, want RESOURCE_EXHAUSTED naming action_cache_max_bytes", err)
	}
	if _, n := c.Stats(); n != 3 {
		t.Fatalf("%d entries after the refusal, want the 3 there before", n)
	}
}
