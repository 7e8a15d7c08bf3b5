package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// both runs a test with unnamed files and with the named fallback.
func both(t *testing.T, test func(t *testing.T)) {
	t.Run("unnamed", func(t *testing.T) {
		if !unnamed() {
			t.Skip("no /proc/self/fd here")
		}
		test(t)
	})
	t.Run("named", func(t *testing.T) {
		saved := unnamed
		unnamed = func() bool { return false }
		t.Cleanup(func() { unnamed = saved })
		test(t)
	})
}

// entries lists dir's names.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func write(t *testing.T, dir string, mode os.FileMode, data string) *File {
	t.Helper()
	f, err := Create(dir, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCommitNamesAWholeFile(t *testing.T) {
	both(t, func(t *testing.T) {
		old := syscall.Umask(0o077) // the mode must not depend on the umask
		defer syscall.Umask(old)
		tmp, out := t.TempDir(), t.TempDir()
		final := filepath.Join(out, "a", "b", "blob")
		f := write(t, tmp, 0o555, "hello")
		if _, err := os.Stat(final); !os.IsNotExist(err) {
			t.Fatalf("final name visible before commit: %v", err)
		}
		if err := f.Commit(final); err != nil {
			t.Fatal(err)
		}
		f.Abort() // a no-op after commit
		b, err := os.ReadFile(final)
		if err != nil || string(b) != "hello" {
			t.Fatalf("read %q, %v; want hello", b, err)
		}
		st, err := os.Stat(final)
		if err != nil || st.Mode().Perm() != 0o555 {
			t.Fatalf("mode %v, %v; want 0555", st.Mode(), err)
		}
		if n := entries(t, tmp); len(n) != 0 {
			t.Errorf("temporary directory holds %v after commit", n)
		}
		if err := f.Commit(final); err == nil {
			t.Error("a second commit succeeded")
		}
	})
}

// replaceOld writes "old" at out/entry and returns that path.
func replaceOld(t *testing.T, out string) string {
	t.Helper()
	final := filepath.Join(out, "entry")
	if err := os.WriteFile(final, []byte("old, damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	return final
}

// commitOver commits f, which holds "new", over final and checks that
// final holds it and is all there is in its directory.
func commitOver(t *testing.T, f *File, final string) {
	t.Helper()
	if err := f.Commit(final); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(final); string(b) != "new" {
		t.Fatalf("final holds %q, want new", b)
	}
	if n := entries(t, filepath.Dir(final)); len(n) != 1 {
		t.Errorf("output directory holds %v, want only the entry", n)
	}
}

func TestCommitReplaces(t *testing.T) {
	both(t, func(t *testing.T) {
		tmp, out := t.TempDir(), t.TempDir()
		final := replaceOld(t, out)
		commitOver(t, write(t, tmp, 0o444, "new"), final)
	})
}

// TestCommitReplacesPastAStaleSideName: a crash between the link beside
// final and the rename leaves that link; a later process may get the same
// name (same pid, same descriptor) and must still replace final.
func TestCommitReplacesPastAStaleSideName(t *testing.T) {
	if !unnamed() {
		t.Skip("no /proc/self/fd here")
	}
	tmp, out := t.TempDir(), t.TempDir()
	final := replaceOld(t, out)
	f := write(t, tmp, 0o444, "new")
	if err := os.WriteFile(f.sideName(final), []byte("stale"), 0o644); err != nil {
		t.Fatal(err)
	}
	commitOver(t, f, final)
}

func TestAbortLeavesNothing(t *testing.T) {
	both(t, func(t *testing.T) {
		tmp := t.TempDir()
		f := write(t, tmp, 0o444, "partial")
		f.Abort()
		f.Abort()
		if n := entries(t, tmp); len(n) != 0 {
			t.Errorf("temporary directory holds %v after abort", n)
		}
		if err := f.Commit(filepath.Join(tmp, "x")); err == nil {
			t.Error("commit after abort succeeded")
		}
	})
}

func TestFailedCommitLeavesNothing(t *testing.T) {
	both(t, func(t *testing.T) {
		tmp, out := t.TempDir(), t.TempDir()
		// A plain file where a parent directory should be.
		if err := os.WriteFile(filepath.Join(out, "file"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := write(t, tmp, 0o444, "x").Commit(filepath.Join(out, "file", "blob")); err == nil {
			t.Fatal("commit under a file succeeded")
		}
		if n := entries(t, tmp); len(n) != 0 {
			t.Errorf("temporary directory holds %v after a failed commit", n)
		}
	})
}

func TestConcurrentCommitsOfOneName(t *testing.T) {
	both(t, func(t *testing.T) {
		tmp, out := t.TempDir(), t.TempDir()
		final := filepath.Join(out, "blob")
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for i := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f, err := Create(tmp, 0o444)
				if err == nil {
					_, err = fmt.Fprintf(f, "writer %02d", i)
				}
				if err == nil {
					err = f.Commit(final)
				}
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Error(err)
			}
		}
		if b, _ := os.ReadFile(final); len(b) != len("writer 00") {
			t.Errorf("final holds %q, want one writer's whole bytes", b)
		}
		if n := entries(t, out); len(n) != 1 {
			t.Errorf("output directory holds %v, want only the entry", n)
		}
		if n := entries(t, tmp); len(n) != 0 {
			t.Errorf("temporary directory holds %v", n)
		}
	})
}
