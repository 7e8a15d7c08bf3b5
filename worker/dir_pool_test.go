package worker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/dirnames"
)

// newTestPool returns a trash and a pool of at most max directories that
// it recycles into, both in a new temporary directory.
func newTestPool(t *testing.T, max int) (*trash, *dirPool, string) {
	t.Helper()
	dir := t.TempDir()
	tr, err := newTrash(filepath.Join(dir, "trash"), 1, 8, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.close)
	pool, err := newDirPool(filepath.Join(dir, "pool"), max, tr.discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(pool.fd) })
	tr.pool = pool
	return tr, pool, dir
}

// drained waits until tr holds no tree.
func drained(t *testing.T, tr *trash) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		tr.mu.Lock()
		idle := len(tr.queue) == 0 && tr.busy == 0
		tr.mu.Unlock()
		if names, _ := dirnames.Read(tr.dir); idle && len(names) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the trash did not drain")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func ino(t *testing.T, p string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestDirPoolRecyclesCleanDirectories: a recycled tree's directories,
// emptied of their files, come back for new directories (the same
// inodes), with a new directory's owner and mode whatever the action
// made of them; a discarded tree's do not.
func TestDirPoolRecyclesCleanDirectories(t *testing.T) {
	tr, pool, dir := newTestPool(t, 100)
	root := filepath.Join(dir, "root")
	for _, d := range []string{"a/b", "c"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "a/b/out"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// What an action may do to its own directories: reset, not refused.
	if err := os.Chmod(filepath.Join(root, "a/b"), 0o2777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "c"), 0); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		if err := os.Lchown(filepath.Join(root, "a"), 1000000, 1000000); err != nil {
			t.Fatal(err)
		}
	}
	// Dates chosen to carry data to the next holder, or to look in use.
	chosen := time.Date(2090, 1, 1, 0, 0, 0, 111111111, time.UTC)
	for _, d := range []string{"a", "c"} {
		if err := os.Chtimes(filepath.Join(root, d), chosen, chosen); err != nil {
			t.Fatal(err)
		}
	}
	before := time.Now().Add(-time.Second)
	was := map[uint64]bool{}
	for _, d := range []string{"", "a", "a/b", "c"} {
		was[ino(t, filepath.Join(root, d))] = true
	}
	tr.recycle(root)
	drained(t, tr)
	if got := pool.size(); got != 4 {
		t.Fatalf("pool holds %d directories, want the tree's 4", got)
	}
	fresh := filepath.Join(dir, "fresh")
	if err := os.Mkdir(fresh, 0o755); err != nil {
		t.Fatal(err)
	}
	var want unix.Stat_t
	if err := unix.Stat(fresh, &want); err != nil {
		t.Fatal(err)
	}
	for i := range 4 {
		p := filepath.Join(dir, fmt.Sprint("new", i))
		if err := pool.mkdir(p); err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Stat(p, &st); err != nil {
			t.Fatal(err)
		}
		if !was[st.Ino] {
			t.Errorf("%s: inode %d, not one of the recycled tree's", p, st.Ino)
		}
		if st.Mode != want.Mode || st.Uid != want.Uid || st.Gid != want.Gid {
			t.Errorf("%s: mode %o, owner %d:%d; want a new directory's %o, %d:%d", p, st.Mode, st.Uid, st.Gid, want.Mode, want.Uid, want.Gid)
		}
		for _, ts := range []unix.Timespec{st.Atim, st.Mtim} {
			if at := time.Unix(ts.Unix()); at.Before(before) || at.After(time.Now()) {
				t.Errorf("%s: time %v kept, want the time it was recycled", p, at)
			}
		}
		if ents, _ := os.ReadDir(p); len(ents) != 0 {
			t.Errorf("%s holds %v", p, ents)
		}
	}
	// Empty: made new.
	if err := pool.mkdir(filepath.Join(dir, "new4")); err != nil || was[ino(t, filepath.Join(dir, "new4"))] {
		t.Errorf("an empty pool's mkdir: %v, or a recycled inode", err)
	}
	// A taken name fails as mkdir does, and keeps the pooled directory.
	if err := os.MkdirAll(filepath.Join(root, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr.recycle(filepath.Join(root, "d"))
	drained(t, tr)
	if err := pool.mkdir(fresh); !errors.Is(err, os.ErrExist) || pool.size() != 1 {
		t.Errorf("mkdir over an existing name: %v, pool %d; want EEXIST and the pooled one kept", err, pool.size())
	}

	// A discarded tree (its action's Run did not come back) is removed.
	if err := os.MkdirAll(filepath.Join(root, "e/f"), 0o755); err != nil {
		t.Fatal(err)
	}
	tr.discard(root)
	drained(t, tr)
	if got := pool.size(); got != 1 {
		t.Errorf("pool holds %d after a discard, want 1", got)
	}
}

// TestDirPoolRefusesWhatAnActionLeft: a directory an action left an
// attribute, an inode flag, or a long body on is removed, not pooled; so
// is one past the pool's bound.
func TestDirPoolRefusesWhatAnActionLeft(t *testing.T) {
	cases := []struct {
		name  string
		touch func(t *testing.T, p string) error
	}{
		{"user attribute", func(t *testing.T, p string) error { return unix.Setxattr(p, "user.mark", []byte("x"), 0) }},
		{"access ACL", func(t *testing.T, p string) error {
			// user::rwx, user:1234:rwx, group::r-x, mask::rwx, other::r-x
			acl := []byte{2, 0, 0, 0,
				1, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
				2, 0, 7, 0, 0xd2, 4, 0, 0,
				4, 0, 5, 0, 0xff, 0xff, 0xff, 0xff,
				0x10, 0, 7, 0, 0xff, 0xff, 0xff, 0xff,
				0x20, 0, 5, 0, 0xff, 0xff, 0xff, 0xff}
			return unix.Setxattr(p, "system.posix_acl_access", acl, 0)
		}},
		{"nodump flag", func(t *testing.T, p string) error {
			fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
			if err != nil {
				return err
			}
			return unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags|0x40)) // FS_NODUMP_FL
		}},
		{"long directory", func(t *testing.T, p string) error {
			var fs unix.Statfs_t
			if err := unix.Statfs(p, &fs); err != nil {
				return err
			}
			if fs.Type == unix.TMPFS_MAGIC {
				return fmt.Errorf("a tmpfs directory shrinks as it empties: %w", unix.ENOTSUP)
			}
			for i := range 300 {
				if err := os.WriteFile(filepath.Join(p, fmt.Sprintf("a-rather-long-file-name-%04d", i)), nil, 0o644); err != nil {
					return err
				}
			}
			return nil
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, pool, dir := newTestPool(t, 100)
			root := filepath.Join(dir, "root")
			if err := os.MkdirAll(filepath.Join(root, "x"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := tc.touch(t, filepath.Join(root, "x")); err != nil {
				if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
					t.Skipf("this filesystem has no %s: %v", tc.name, err)
				}
				t.Fatal(err)
			}
			touched := ino(t, filepath.Join(root, "x"))
			tr.recycle(root)
			drained(t, tr)
			if got := pool.size(); got != 1 {
				t.Fatalf("pool holds %d directories, want only the untouched root", got)
			}
			if err := pool.mkdir(filepath.Join(dir, "new")); err != nil {
				t.Fatal(err)
			}
			if ino(t, filepath.Join(dir, "new")) == touched {
				t.Errorf("the directory with a %s came back", tc.name)
			}
		})
	}
	t.Run("bound", func(t *testing.T) {
		tr, pool, dir := newTestPool(t, 3)
		root := filepath.Join(dir, "root")
		for i := range 5 {
			if err := os.MkdirAll(filepath.Join(root, fmt.Sprint(i)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		tr.recycle(root)
		drained(t, tr)
		if got := pool.size(); got != 3 {
			t.Errorf("pool of 3 holds %d", got)
		}
		if names, _ := dirnames.Read(filepath.Join(dir, "pool")); len(names) != 3 {
			t.Errorf("pool directory holds %v", names)
		}
	})
}

// TestDirPoolStartsEmpty: what a previous process left in the pool's
// directory is not taken.
func TestDirPoolStartsEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "pool", "7"), 0o777); err != nil {
		t.Fatal(err)
	}
	tr, err := newTrash(filepath.Join(dir, "trash"), 1, 8, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	pool, err := newDirPool(filepath.Join(dir, "pool"), 10, tr.discard)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pool.fd)
	if pool.size() != 0 {
		t.Errorf("pool took %d of a previous process's directories", pool.size())
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "pool"), &st); err != nil || st.Mode&0o777 != 0o700 {
		t.Errorf("pool directory mode %o, %v; want 0700", st.Mode&0o777, err)
	}
}
