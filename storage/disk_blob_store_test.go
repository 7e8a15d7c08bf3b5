package storage_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/storage"
	"github.com/paddock-build/paddock/storage/storagetest"

	"errors"
	"syscall"
)

func sha(data string) digest.Digest {
	return digest.FromBytes(repb.DigestFunction_SHA256, []byte(data))
}

func putString(t *testing.T, s storage.BlobStore, data string) digest.Digest {
	t.Helper()
	d := sha(data)
	if err := s.Put(context.Background(), d, strings.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	return d
}

// storedPath returns the file of blob d in s, failing the test, with
// what, if s does not have it.
func storedPath(t *testing.T, s *storage.DiskBlobStore, d digest.Digest, what string) string {
	t.Helper()
	p, ok := s.Path(d)
	if !ok {
		t.Fatal(what)
	}
	return p
}

func missing(t *testing.T, s storage.BlobStore, ds ...digest.Digest) map[digest.Digest]bool {
	t.Helper()
	m, err := s.FindMissing(context.Background(), ds)
	if err != nil {
		t.Fatal(err)
	}
	out := map[digest.Digest]bool{}
	for _, d := range m {
		out[d] = true
	}
	return out
}

func TestDiskEvictsLeastRecentlyUsed(t *testing.T) {
	dir := t.TempDir()
	cost := storage.DiskCostIn(dir, 10)
	s := newDisk(t, dir, 3*cost)       // room for three
	a := putString(t, s, "aaaaaaaaaa") // 10 bytes each
	b := putString(t, s, "bbbbbbbbbb")
	c := putString(t, s, "cccccccccc")
	// Touch a, so b is now the least recently used.
	missing(t, s, a)
	d := putString(t, s, "dddddddddd")
	m := missing(t, s, a, b, c, d)
	if !m[b] || m[a] || m[c] || m[d] {
		t.Fatalf("after eviction missing = %v; want only b (%s)", m, b)
	}
	used, n, evicted := s.Stats()
	if used != 3*cost || n != 3 || evicted != 1 {
		t.Fatalf("Stats = %d bytes, %d blobs, %d evicted; want %d, 3, 1", used, n, evicted, 3*cost)
	}
}

// TestDiskRefusesBlobLargerThanStore: a blob larger than the whole store
// is INVALID_ARGUMENT (asking again cannot help; clients retry
// RESOURCE_EXHAUSTED).
func TestDiskRefusesBlobLargerThanStore(t *testing.T) {
	s := newDisk(t, t.TempDir(), 5)
	err := s.Put(context.Background(), sha("too large"), strings.NewReader("too large"))
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("got %v, want INVALID_ARGUMENT", err)
	}
}

func TestDiskRebuildsIndexAtStartup(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	a := putString(t, s, "kept across restarts")
	// Leftovers of a write killed half-way, and a stray file in the CAS tree.
	if err := os.WriteFile(filepath.Join(dir, "tmp", "half-written"), []byte("partial"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cas", "sha256", "zz-not-a-blob"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}

	s2 := newDisk(t, dir, 0)
	if m := missing(t, s2, a); m[a] {
		t.Fatal("blob lost across restart")
	}
	if got, err := storagetest.ReadAll(t, s2, a, 0); err != nil || string(got) != "kept across restarts" {
		t.Fatalf("read after restart: %q, %v", got, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(entries) != 0 {
		t.Fatalf("tmp/ not cleared at start-up: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "cas", "sha256", "zz-not-a-blob")); !os.IsNotExist(err) {
		t.Fatalf("stray file kept: %v", err)
	}
	if used, n, _ := s2.Stats(); used != storage.DiskCostIn(dir, a.SizeBytes()) || n != 1 {
		t.Fatalf("rebuilt index has %d bytes in %d blobs", used, n)
	}
}

// TestDiskRestartTakesFutureDatesAsUnused: at start-up a blob whose file
// is dated in the future counts as the least recently used, not the most:
// a date an action chose must not keep its blob through every restart.
func TestDiskRestartTakesFutureDatesAsUnused(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	pinned := putString(t, s, "dated 2099")
	p := storedPath(t, s, pinned, "blob not stored")
	future := time.Now().Add(75 * 365 * 24 * time.Hour)
	if err := os.Chtimes(p, future, future); err != nil {
		t.Fatal(err)
	}
	past := time.Now().Add(-time.Hour)
	var others []digest.Digest
	for i, x := range []string{"used an hour ago", "used an hour ago too"} {
		d := putString(t, s, x)
		others = append(others, d)
		q, _ := s.Path(d)
		if err := os.Chtimes(q, past.Add(time.Duration(i)*time.Second), past.Add(time.Duration(i)*time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	s2 := newDisk(t, dir, 2*storage.DiskCostIn(dir, 20))
	if m := missing(t, s2, pinned, others[0], others[1]); !m[pinned] || m[others[0]] || m[others[1]] {
		t.Errorf("after a restart into room for two, missing %v; want only the blob dated in the future", m)
	}
}

func TestDiskRestartEvictsToNewBound(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	for _, x := range []string{"0123456789", "abcdefghij", "ABCDEFGHIJ"} {
		putString(t, s, x)
	}
	bound := 2 * storage.DiskCostIn(dir, 10)
	s2 := newDisk(t, dir, bound)
	if used, n, _ := s2.Stats(); used > bound || n != 2 {
		t.Fatalf("after restart with a smaller bound: %d bytes in %d blobs", used, n)
	}
}

func corruptFile(t *testing.T, dir string, d digest.Digest, mutate func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(dir, "cas", "sha256", d.Hash()[:2], d.Hash())
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, mutate(b), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestDiskCorruptBlobIsNeverServed(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	data := bytes.Repeat([]byte("payload "), 100000)
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	if err := s.Put(context.Background(), d, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	corruptFile(t, dir, d, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })

	r, err := s.Get(context.Background(), d, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if status.Code(err) != codes.DataLoss {
		t.Fatalf("read of a corrupt blob ended with %v, want DATA_LOSS", err)
	}
	if len(got) >= len(data) {
		t.Fatalf("corrupt blob delivered whole (%d bytes)", len(got))
	}
	if m := missing(t, s, d); !m[d] {
		t.Fatal("corrupt blob still reported present")
	}
	if _, err := os.Stat(filepath.Join(dir, "cas", "sha256", d.Hash()[:2], d.Hash())); !os.IsNotExist(err) {
		t.Fatal("corrupt file not removed")
	}
}

func TestDiskTruncatedBlobIsNotFound(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	d := putString(t, s, "a blob that will be truncated")
	corruptFile(t, dir, d, func(b []byte) []byte { return b[:5] })
	_, err := s.Get(context.Background(), d, 0)
	if status.Code(err) != codes.NotFound {
		t.Fatalf("Get of a truncated blob: %v, want NOT_FOUND", err)
	}
	if m := missing(t, s, d); !m[d] {
		t.Fatal("truncated blob still reported present")
	}
}

func TestDiskBlobsAreReadOnlyFiles(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	d := putString(t, s, "hard-linkable")
	p := storedPath(t, s, d, "Path of a stored blob not found")
	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o444 {
		t.Fatalf("blob file mode %v, want 0444", info.Mode().Perm())
	}
}

// After a power loss a blob file may survive truncated under its name. It
// must not be served, and a new upload must replace it without leaving two
// index entries for one file.
func TestDiskReplacesTruncatedFileAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	data := "the whole blob, before the power went"
	d := putString(t, s, data)
	corruptFile(t, dir, d, func(b []byte) []byte { return b[:7] })

	s2 := newDisk(t, dir, 0)
	if m := missing(t, s2, d); !m[d] {
		t.Fatal("truncated blob reported present after restart")
	}
	putString(t, s2, data)
	used, n, _ := s2.Stats()
	if want := storage.DiskCostIn(dir, d.SizeBytes()); n != 1 || used != want {
		t.Fatalf("after re-upload: %d blobs, %d bytes; want 1 blob of %d", n, used, want)
	}
	if got, err := storagetest.ReadAll(t, s2, d, 0); err != nil || string(got) != data {
		t.Fatalf("read after re-upload: %q, %v", got, err)
	}
	// An empty file under a non-empty hash is dropped at start-up.
	corruptFile(t, dir, d, func(b []byte) []byte { return nil })
	s3 := newDisk(t, dir, 0)
	if _, n, _ := s3.Stats(); n != 0 {
		t.Fatalf("empty file indexed at start-up (%d blobs)", n)
	}
}

// TestDiskPathVerifiesBeforeUse: a file handed out by path (to be
// hard-linked into an input root) is known good: a byte flipped or a file
// truncated at rest, after the blob was written and used, is caught by
// Path, the blob removed and reported missing, and a new upload works.
func TestDiskPathVerifiesBeforeUse(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func([]byte) []byte
	}{
		{"flipped byte", func(b []byte) []byte { b[len(b)/2] ^= 0x20; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := newDisk(t, dir, 0)
			d := putString(t, s, "an input file that will be damaged at rest")
			if _, ok := s.Path(d); !ok {
				t.Fatal("Path of a good blob: not found")
			}
			corruptFile(t, dir, d, tc.edit)
			if p, ok := s.Path(d); ok {
				t.Fatalf("Path of a damaged blob = %s, want it refused", p)
			}
			if m := missing(t, s, d); !m[d] {
				t.Fatal("damaged blob still reported present")
			}
			if s.VerifyFailures() != 1 {
				t.Errorf("VerifyFailures = %d, want 1", s.VerifyFailures())
			}
			putString(t, s, "an input file that will be damaged at rest")
			if _, ok := s.Path(d); !ok {
				t.Fatal("Path after a new upload: not found")
			}
		})
	}
}

// TestDiskPathVerifiesAfterRestart: blobs found on disk at start-up are
// hashed on first use, so damage done while the store was down is caught;
// Scrub finds it without any use.
func TestDiskPathVerifiesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	a := putString(t, s, "blob a")
	b := putString(t, s, "blob b")
	c := putString(t, s, "blob c")
	corruptFile(t, dir, a, func(x []byte) []byte { x[0] ^= 1; return x })
	corruptFile(t, dir, b, func(x []byte) []byte { x[0] ^= 1; return x })
	s2 := newDisk(t, dir, 0)
	if _, ok := s2.Path(a); ok {
		t.Fatal("a blob damaged while the store was down was handed out")
	}
	checked, corrupt := s2.Scrub(context.Background(), 0)
	if checked != 2 || corrupt != 1 {
		t.Fatalf("Scrub checked %d and found %d corrupt, want 2 and 1 (b)", checked, corrupt)
	}
	if m := missing(t, s2, a, b, c); !m[a] || !m[b] || m[c] {
		t.Fatalf("missing after scrub = %v, want a and b only", m)
	}
	// A scrub hashes again what was verified before: damage that left the
	// file's identity as it was (here, its modification time put back)
	// is found too.
	p := filepath.Join(dir, "cas", "sha256", c.Hash()[:2], c.Hash())
	info, _ := os.Stat(p)
	corruptFile(t, dir, c, func(x []byte) []byte { x[0] ^= 1; return x })
	if err := os.Chtimes(p, info.ModTime(), info.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, corrupt := s2.Scrub(context.Background(), 0); corrupt != 1 {
		t.Fatalf("a second scrub found %d corrupt, want 1 (c, damaged with its mtime restored)", corrupt)
	}
}

// TestDiskPathDoesNotRehashLinkedFiles: linking a verified blob into input
// roots (which changes the inode's ctime and link count) does not make the
// next use hash it again; only a restart does, once.
func TestDiskPathDoesNotRehashLinkedFiles(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, dir, 0)
	d := putString(t, s, "an input used by many actions")
	for i := range 5 {
		p := storedPath(t, s, d, "Path: not found")
		if err := os.Link(p, filepath.Join(dir, fmt.Sprint("root", i))); err != nil {
			t.Fatal(err)
		}
	}
	if n := s.VerifyHashes(); n != 0 {
		t.Fatalf("%d hashes for a blob written by this store and linked 5 times, want 0", n)
	}
	s2 := newDisk(t, dir, 0)
	for range 3 {
		s2.Path(d)
	}
	if n := s2.VerifyHashes(); n != 1 {
		t.Fatalf("after a restart, %d hashes for 3 uses, want 1", n)
	}
}

func inode(t *testing.T, p string) (ino uint64, links uint64) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino, st.Nlink
}

// TestAdoptLinksTheFileItself: Adopt stores a file by linking it (the
// same inode, not a copy), counted like a blob Put; a blob stored already
// is not linked again; a blob larger than the store is refused as Put
// refuses it; a file on another filesystem is ErrCannotAdopt.
func TestAdoptLinksTheFileItself(t *testing.T) {
	dir := t.TempDir()
	s := newDisk(t, filepath.Join(dir, "cas"), 1<<20)
	data := []byte("an output of an action")
	d := digest.FromBytes(repb.DigestFunction_SHA256, data)
	p := filepath.Join(dir, "out")
	if err := os.WriteFile(p, data, 0o444); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := s.Adopt(context.Background(), d, f); err != nil {
		t.Fatal(err)
	}
	cp := storedPath(t, s, d, "adopted blob not in the store")
	if a, _ := inode(t, p); func() uint64 { b, _ := inode(t, cp); return b }() != a {
		t.Error("the store holds a copy, not the file")
	}
	if got, err := storagetest.ReadAll(t, s, d, 0); err != nil || string(got) != string(data) {
		t.Errorf("read %q, %v", got, err)
	}
	if used, n, _ := s.Stats(); n != 1 || used != storage.DiskCostIn(filepath.Join(dir, "cas"), d.SizeBytes()) {
		t.Errorf("stats %d bytes, %d blobs; want one blob at its cost", used, n)
	}
	// Stored already: not linked again.
	if err := s.Adopt(context.Background(), d, f); err != nil {
		t.Fatal(err)
	}
	if _, links := inode(t, p); links != 2 {
		t.Errorf("%d links after a second Adopt, want 2", links)
	}

	big := digest.FromBytes(repb.DigestFunction_SHA256, make([]byte, 2<<20))
	if err := s.Adopt(context.Background(), big, f); status.Code(err) != codes.InvalidArgument || !errors.Is(err, storage.ErrLargerThanStore) {
		t.Errorf("Adopt of a blob larger than the store: %v", err)
	}

	shm, err := os.MkdirTemp("/dev/shm", "adopt-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	defer os.RemoveAll(shm)
	other := []byte("on another filesystem")
	if err := os.WriteFile(filepath.Join(shm, "out"), other, 0o444); err != nil {
		t.Fatal(err)
	}
	g, err := os.Open(filepath.Join(shm, "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	od := digest.FromBytes(repb.DigestFunction_SHA256, other)
	var fs1, fs2 syscall.Statfs_t
	if syscall.Statfs(shm, &fs1) == nil && syscall.Statfs(dir, &fs2) == nil && fs1.Fsid == fs2.Fsid {
		t.Skip("/dev/shm and the test's directory share a filesystem")
	}
	if err := s.Adopt(context.Background(), od, g); !errors.Is(err, storage.ErrCannotAdopt) {
		t.Errorf("Adopt across filesystems: %v, want ErrCannotAdopt", err)
	}
	if _, ok := s.Path(od); ok {
		t.Error("a blob that could not be adopted is in the store")
	}
	if used, n, _ := s.Stats(); n != 1 || used != storage.DiskCostIn(filepath.Join(dir, "cas"), d.SizeBytes()) {
		t.Errorf("after a refused Adopt: %d bytes, %d blobs still counted", used, n)
	}
}
