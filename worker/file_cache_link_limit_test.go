package worker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
)

// linkLimit is link(2) on a filesystem that allows max links per inode
// (ext4: 65,000): the link count is checked and the link made under one
// lock, as the kernel does under the inode's, so concurrent links never
// pass the limit.
func linkLimit(max uint64) func(oldname, newname string) error {
	var mu sync.Mutex
	return func(oldname, newname string) error {
		mu.Lock()
		defer mu.Unlock()
		var st unix.Stat_t
		if err := unix.Stat(oldname, &st); err != nil {
			return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: err}
		}
		if uint64(st.Nlink) >= max {
			return &os.LinkError{Op: "link", Old: oldname, New: newname, Err: unix.EMLINK}
		}
		return os.Link(oldname, newname)
	}
}

// linkLimitCache is a file cache in dir whose filesystem allows max links
// per inode, holding data in its CAS.
func linkLimitCache(t *testing.T, dir string, maxBytes int64, max uint64, data string) (*FileCache, digest.Digest) {
	t.Helper()
	cas := storage.NewMemoryBlobStore()
	d := digest.FromBytes(repb.DigestFunction_SHA256, []byte(data))
	if err := cas.Put(context.Background(), d, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	c, err := NewFileCache(FileCacheOptions{Dir: filepath.Join(dir, "files"), MaxBytes: maxBytes, CAS: cas})
	if err != nil {
		t.Fatal(err)
	}
	c.link = linkLimit(max)
	return c, d
}

// checkInput fails t unless p holds data, read-only with mode, and is a
// hard link (not a copy of its own), and returns its inode.
func checkInput(t *testing.T, p, data string, mode os.FileMode) uint64 {
	t.Helper()
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != data {
		t.Errorf("%s holds %q, want %q", p, got, data)
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	if m := os.FileMode(st.Mode).Perm(); m != mode {
		t.Errorf("%s has mode %v, want %v", p, m, mode)
	}
	if st.Nlink < 2 {
		t.Errorf("%s has 1 link: a copy no cache file shares", p)
	}
	return st.Ino
}

// TestFileCacheLinkLimitMakesReplicas: with 4 links allowed per inode (the
// cache's own name and 3 more), 10 references to one blob, executable and
// not, are 10 correct read-only links to 4 files per variant, all in the
// cache and counted by it, none copies the input root would own alone.
// Before, each reference past the limit was a copy into the input root.
func TestFileCacheLinkLimitMakesReplicas(t *testing.T) {
	dir := t.TempDir()
	data := "one blob, many names"
	c, d := linkLimitCache(t, dir, 0, 4, data)
	inodes := map[bool]map[uint64]bool{}
	for _, exec := range []bool{false, true} {
		mode := os.FileMode(0o444)
		if exec {
			mode = 0o555
		}
		inodes[exec] = map[uint64]bool{}
		for i := range 10 {
			dst := filepath.Join(dir, fmt.Sprintf("in-%v-%d", exec, i))
			if err := c.Link(context.Background(), d, exec, dst); err != nil {
				t.Fatalf("link %d (exec %v): %v", i, exec, err)
			}
			inodes[exec][checkInput(t, dst, data, mode)] = true
		}
		if n := len(inodes[exec]); n != 4 {
			t.Errorf("exec %v: 10 links over %d files, want 4 (3 links each)", exec, n)
		}
	}
	for ino := range inodes[false] {
		if inodes[true][ino] {
			t.Errorf("inode %d is both executable and not", ino)
		}
	}
	if size, files := c.Stats(); files != 8 || size != 8*d.SizeBytes() {
		t.Errorf("cache holds %d files, %d bytes; want 8 and %d: every replica counted", files, size, 8*d.SizeBytes())
	}
}

// TestFileCacheReplicasAreEvicted: replicas made at the link limit count
// against MaxBytes like any entry, and the least recently used are removed
// from the cache past it (their input roots keep their links).
func TestFileCacheReplicasAreEvicted(t *testing.T) {
	dir := t.TempDir()
	data := "sixteen bytes!!!"
	size := int64(len(data))
	c, d := linkLimitCache(t, dir, 3*size, 2, data) // 1 link per replica
	link := func(i int) string {
		dst := filepath.Join(dir, fmt.Sprintf("in-%d", i))
		if err := c.Link(context.Background(), d, false, dst); err != nil {
			t.Fatalf("link %d: %v", i, err)
		}
		checkInput(t, dst, data, 0o444)
		return dst
	}
	first := link(0)
	link(1)
	link(2)
	if held, files := c.Stats(); files != 3 || held != 3*size {
		t.Fatalf("3 links, 1 per replica: cache holds %d files, %d bytes; want 3 and %d", files, held, 3*size)
	}
	for i := 3; i < 6; i++ {
		link(i)
	}
	if held, files := c.Stats(); files != 3 || held != 3*size {
		t.Errorf("6 links past a bound of 3 files: cache holds %d files, %d bytes; want 3 and %d", files, held, 3*size)
	}
	var st unix.Stat_t
	if err := unix.Stat(first, &st); err != nil {
		t.Fatal(err)
	}
	if st.Nlink != 1 {
		t.Errorf("the first replica has %d links, want 1: evicted from the cache, kept by its input root", st.Nlink)
	}
	if n := cacheFiles(t, c); n != 3 {
		t.Errorf("%d files in the cache directory, want 3", n)
	}
}

// cacheFiles counts the entry files in c's directory.
func cacheFiles(t *testing.T, c *FileCache) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(c.opts.Dir, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && p == c.tmpDir {
			return filepath.SkipDir
		}
		if !e.IsDir() {
			n++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFileCacheReusesFullReplicaOnceLinksAreGone: a replica that filled up
// takes links again once the input roots linking it are removed, so the
// replicas follow the links that exist, not all those ever made.
func TestFileCacheReusesFullReplicaOnceLinksAreGone(t *testing.T) {
	dir := t.TempDir()
	data := "used by every action"
	c, d := linkLimitCache(t, dir, 0, 4, data)
	root := func(name string, n int) []uint64 {
		var inodes []uint64
		for i := range n {
			dst := filepath.Join(dir, name, fmt.Sprint(i))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := c.Link(context.Background(), d, false, dst); err != nil {
				t.Fatalf("%s: link %d: %v", name, i, err)
			}
			inodes = append(inodes, checkInput(t, dst, data, 0o444))
		}
		return inodes
	}
	first := root("a", 6) // two full replicas
	if err := os.RemoveAll(filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		second := root(fmt.Sprintf("b%d", i), 6)
		if _, files := c.Stats(); files != 2 {
			t.Fatalf("after action b%d: %d replicas, want 2 (those of action a, free again)", i, files)
		}
		if second[0] != first[0] && second[0] != first[5] {
			t.Errorf("action b%d linked inode %d, not one of action a's replicas %d and %d", i, second[0], first[0], first[5])
		}
		if err := os.RemoveAll(filepath.Join(dir, fmt.Sprintf("b%d", i))); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFileCacheConcurrentLinksAtTheLimit: actions linking one blob at once
// past the link limit all get correct links, from replicas that each took
// the limit's worth before the next was made (run with -race).
func TestFileCacheConcurrentLinksAtTheLimit(t *testing.T) {
	dir := t.TempDir()
	data := "linked from everywhere at once"
	const workers, links, max = 8, 100, 51 // 50 links per replica
	c, d := linkLimitCache(t, dir, 0, max, data)
	var mu sync.Mutex
	inodes := map[uint64]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range links {
				dst := filepath.Join(dir, fmt.Sprintf("in-%d-%d", w, i))
				if err := c.Link(context.Background(), d, false, dst); err != nil {
					t.Errorf("worker %d link %d: %v", w, i, err)
					return
				}
				ino := checkInput(t, dst, data, 0o444)
				mu.Lock()
				inodes[ino]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if want := (workers*links + max - 2) / (max - 1); len(inodes) != want {
		t.Errorf("%d links over %d files, want %d", workers*links, len(inodes), want)
	}
	if _, files := c.Stats(); files != len(inodes) {
		t.Errorf("cache counts %d files, links went to %d", files, len(inodes))
	}
}

// TestInputRootPastExt4LinkLimit is the attack on a real ext4 filesystem
// (65,000 links per inode): a Directory of 300 names for one blob, named
// 250 times by the root, is 75,000 links. They go to 2 files, both the
// cache's, where each reference past 65,000 was a copy owned by the
// worker and counted nowhere (148 KB uploaded made 980 MB of copies).
func TestInputRootPastExt4LinkLimit(t *testing.T) {
	if testing.Short() {
		t.Skip("makes 75,000 links")
	}
	dir := t.TempDir()
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type != unix.EXT4_SUPER_MAGIC {
		t.Skipf("the temporary directory is not on ext4 (filesystem type %#x): no known link limit", fs.Type)
	}
	cas := storage.NewMemoryBlobStore()
	put := func(data []byte) digest.Digest {
		d := digest.FromBytes(repb.DigestFunction_SHA256, data)
		if err := cas.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		return d
	}
	data := []byte("one blob, 75,000 names")
	blob := put(data)
	sub := &repb.Directory{}
	for i := range 300 {
		sub.Files = append(sub.Files, &repb.FileNode{Name: fmt.Sprintf("f%03d", i), Digest: blob.Proto()})
	}
	subBytes, _ := proto.Marshal(sub)
	root := &repb.Directory{}
	for i := range 250 {
		root.Directories = append(root.Directories, &repb.DirectoryNode{Name: fmt.Sprintf("d%03d", i), Digest: put(subBytes).Proto()})
	}
	rootBytes, _ := proto.Marshal(root)
	files, err := NewFileCache(FileCacheOptions{Dir: filepath.Join(dir, "files"), CAS: cas})
	if err != nil {
		t.Fatal(err)
	}
	b := &inputRootBuilder{cas: cas, files: files, dirs: newDirectoryCache(defaultDirectoryCacheBytes), parallelism: 16, limits: InputLimits{}.withDefaults()}
	dst := filepath.Join(dir, "root")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	if n, err := b.build(context.Background(), repb.DigestFunction_SHA256, put(rootBytes), dst); err != nil || n != 75_000 {
		t.Fatalf("build: %d files, %v", n, err)
	}
	inodes := map[uint64]string{}
	for i := range 250 {
		for j := range 300 {
			p := filepath.Join(dst, fmt.Sprintf("d%03d", i), fmt.Sprintf("f%03d", j))
			var st unix.Stat_t
			if err := unix.Stat(p, &st); err != nil {
				t.Fatal(err)
			}
			if st.Mode&0o777 != 0o444 {
				t.Fatalf("%s has mode %o, want 444", p, st.Mode&0o777)
			}
			inodes[st.Ino] = p
		}
	}
	if len(inodes) != 2 {
		t.Errorf("75,000 links over %d files, want 2", len(inodes))
	}
	for _, p := range inodes {
		checkInput(t, p, string(data), 0o444)
	}
	if size, n := files.Stats(); n != len(inodes) || size != int64(n)*blob.SizeBytes() {
		t.Errorf("cache counts %d files, %d bytes; links went to %d files", n, size, len(inodes))
	}
}
