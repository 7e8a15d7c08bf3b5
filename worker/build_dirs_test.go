package worker_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/worker"
)

// withSpareDir replaces h's worker by one that keeps build directories
// in h.dir/spare, and returns that directory.
func withSpareDir(t *testing.T, h *harness) string {
	t.Helper()
	spare := filepath.Join(h.dir, "spare")
	if err := os.MkdirAll(filepath.Join(spare, "stale"), 0o755); err != nil { // a previous worker's
		t.Fatal(err)
	}
	var err error
	h.w, err = worker.New(worker.Options{
		ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner,
		BuildDir: filepath.Join(h.dir, "builds"), SpareDir: spare, Concurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(spare); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("spare directory: %v, %v; want mode 0700", st, err)
	}
	return spare
}

// tree lists the files below dir: relative path -> inode and size.
func tree(t *testing.T, dir string) map[string][2]int64 {
	t.Helper()
	out := map[string][2]int64{}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = [2]int64{int64(info.Sys().(*syscall.Stat_t).Ino), info.Size()}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSpareBuildDirectories: with a SpareDir, one action after another
// uses the same build directory and stdout and stderr files, emptied in
// between, and a new input root each time (empty, mode 0755, whatever the
// previous action did to its own); each result has its own output, and the
// build directory is cleaned as without.
func TestSpareBuildDirectories(t *testing.T) {
	h := newHarness(t)
	spare := withSpareDir(t, h)
	runs := 0
	h.runner.Before = func(root string) {
		runs++
		st, err := os.Lstat(root)
		if err != nil || !st.IsDir() || st.Mode().Perm() != 0o755 {
			t.Errorf("input root %v, %v before the action; want a directory of mode 0755", st, err)
		}
		if ents, _ := os.ReadDir(root); len(ents) != 0 {
			t.Errorf("input root holds %v before the action", ents)
		}
		checkPrivateActionDir(t, root)
	}
	var first map[string][2]int64
	for i := range 3 {
		want := fmt.Sprintf("action %d", i)
		res := ok(t, h.w.Execute(context.Background(), h.action(sh("echo "+want+"; echo "+want+" >&2; echo x > left-behind; chmod 0700 ."), &repb.Directory{}, true)))
		if got := string(h.read(res.StdoutDigest)); got != want+"\n" {
			t.Errorf("action %d: stdout %q", i, got)
		}
		if got := string(h.read(res.StderrDigest)); got != want+"\n" {
			t.Errorf("action %d: stderr %q", i, got)
		}
		if entries, _ := os.ReadDir(filepath.Join(h.dir, "builds")); len(entries) != 0 {
			t.Errorf("build directory not cleaned: %v", entries)
		}
		ents, _ := os.ReadDir(spare)
		if len(ents) != 1 {
			t.Fatalf("after action %d, spare directories %v, want one", i, ents)
		}
		files := tree(t, filepath.Join(spare, ents[0].Name()))
		// The directory and its emptied stdout and stderr.
		if len(files) != 3 || files["stdout"][1] != 0 || files["stderr"][1] != 0 {
			t.Fatalf("after action %d, the spare directory holds %v, want only empty stdout and stderr", i, files)
		}
		if first == nil {
			first = files
		} else if fmt.Sprint(files) != fmt.Sprint(first) {
			t.Errorf("after action %d, spare directory %v, want the first action's %v (same inodes) reused", i, files, first)
		}
	}
	if runs != 3 {
		t.Fatalf("%d runs", runs)
	}
}

// checkPrivateActionDir checks that the input root's directory, which
// the runner gives to the sandbox's ids, is closed to the host's other
// users (mode 0700) and that the build directory above it stays
// searchable (0711): the sandbox opens its input root by its host path.
func checkPrivateActionDir(t *testing.T, root string) {
	t.Helper()
	for p, want := range map[string]os.FileMode{filepath.Dir(root): 0o700, filepath.Dir(filepath.Dir(root)): 0o711} {
		if st, err := os.Lstat(p); err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want mode %v", p, st, err, want)
		}
	}
}

// TestActionDirectoryIsPrivate: without spare directories too, each
// action's directory is made mode 0700, and the runner is told it is the
// action's own.
func TestActionDirectoryIsPrivate(t *testing.T) {
	h := newHarness(t)
	h.runner.Before = func(root string) { checkPrivateActionDir(t, root) }
	h.runner.After = func(*runnerpb.RunResponse) {
		if req := h.runner.LastRequest(); req.ActionDir != filepath.Dir(req.InputRoot) {
			t.Errorf("action_dir %q, input root %q; want its parent", req.ActionDir, req.InputRoot)
		}
	}
	ok(t, h.w.Execute(context.Background(), h.action(sh("true"), &repb.Directory{}, true)))
	if h.runner.Calls() != 1 {
		t.Fatalf("%d runs", h.runner.Calls())
	}
}

// TestSpareBuildDirectoriesConcurrent: actions running at once each get
// their own directory, and their own output; at most Concurrency are kept.
func TestSpareBuildDirectoriesConcurrent(t *testing.T) {
	h := newHarness(t)
	spare := withSpareDir(t, h)
	for round := range 2 {
		var wg sync.WaitGroup
		errs := make(chan error, 6)
		for i := range 6 {
			a := h.action(sh(fmt.Sprintf("echo %d-%d; sleep 0.2; echo %d", round, i, i)), &repb.Directory{}, true)
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp := h.w.Execute(context.Background(), a)
				if resp.Status.GetCode() != 0 {
					errs <- fmt.Errorf("action %d: %v", i, resp.Status)
					return
				}
				if got, want := string(h.read(resp.Result.StdoutDigest)), fmt.Sprintf("%d-%d\n%d\n", round, i, i); got != want {
					errs <- fmt.Errorf("action %d: stdout %q, want %q", i, got, want)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	}
	if ents, _ := os.ReadDir(spare); len(ents) > 4 {
		t.Errorf("%d spare directories kept, want at most the concurrency, 4", len(ents))
	}
}

// TestSpareBuildDirectoryDroppedAfterRunnerFailure: when the Run call
// fails (a sandbox may still be writing), the directory is removed, not
// kept.
func TestSpareBuildDirectoryDroppedAfterRunnerFailure(t *testing.T) {
	h := newHarness(t)
	spare := withSpareDir(t, h)
	ok(t, h.w.Execute(context.Background(), h.action(sh("echo before"), &repb.Directory{}, true)))
	if ents, _ := os.ReadDir(spare); len(ents) != 1 {
		t.Fatalf("spare directories %v, want one", ents)
	}
	h.runner.Err = errors.New("connection refused")
	resp := h.w.Execute(context.Background(), h.action(sh("true"), &repb.Directory{}, true))
	if status.FromProto(resp.Status).Code() != codes.Unavailable {
		t.Fatalf("status %v, want UNAVAILABLE", resp.Status)
	}
	if ents, _ := os.ReadDir(spare); len(ents) != 0 {
		t.Errorf("after a failed Run, spare directories %v are kept", ents)
	}
	if entries, _ := os.ReadDir(filepath.Join(h.dir, "builds")); len(entries) != 0 {
		t.Errorf("build directory not cleaned: %v", entries)
	}
	h.runner.Err = nil
	res := ok(t, h.w.Execute(context.Background(), h.action(sh("echo after"), &repb.Directory{}, true)))
	if got := string(h.read(res.StdoutDigest)); got != "after\n" {
		t.Errorf("stdout %q", got)
	}
}

// poolSize polls until the directory pool beside spare holds want
// directories (the trash recycles in the background) and fails if it
// never does.
func poolSize(t *testing.T, spare string, want int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		ents, _ := os.ReadDir(spare + ".dirs")
		if len(ents) == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("directory pool holds %d, want %d", len(ents), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestInputRootDirectoriesAreRecycledClean: with a SpareDir, the next
// action's input root is made of the directories the last one's ended
// with (same inodes), each as a new one would be (mode 0755, the worker's
// owner, no attributes, empty of what the action left), except those the
// action put an attribute on, which are removed; and nothing is recycled
// from an action whose Run failed.
func TestInputRootDirectoriesAreRecycledClean(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the action gives its directories to another owner")
	}
	h := newHarness(t)
	spare := withSpareDir(t, h)
	leaf := &repb.Directory{Files: []*repb.FileNode{{Name: "in", Digest: h.put([]byte("in")).Proto()}}}
	mid := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "b", Digest: h.putProto(leaf).Proto()}, {Name: "c", Digest: h.putProto(&repb.Directory{}).Proto()}}}
	root := &repb.Directory{Directories: []*repb.DirectoryNode{{Name: "a", Digest: h.putProto(mid).Proto()}}}
	dirs := []string{"", "a", "a/b", "a/c"}
	inodes := func(r string) map[uint64]string {
		got := map[uint64]string{}
		for _, d := range dirs {
			st, err := os.Lstat(filepath.Join(r, d))
			if err != nil {
				t.Fatal(err)
			}
			got[st.Sys().(*syscall.Stat_t).Ino] = d
		}
		return got
	}
	var first map[uint64]string
	h.runner.Before = func(r string) {
		first = inodes(r)
		// Held open to the end of the test, so that none of these inodes
		// is freed while the checks below compare inode numbers: a/c is
		// removed, and a directory made new for the next action could
		// otherwise get its number (seen once in CI).
		for _, d := range dirs {
			f, err := os.Open(filepath.Join(r, d))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
		}
		// What an action does to its own directories.
		if err := syscall.Setxattr(filepath.Join(r, "a/c"), "user.mark", []byte("x"), 0); err != nil {
			t.Skipf("no user attributes here: %v", err)
		}
		for _, d := range []string{"a", "a/b"} {
			if err := os.Chmod(filepath.Join(r, d), 0o2777); err != nil {
				t.Fatal(err)
			}
			if err := os.Lchown(filepath.Join(r, d), 1000000, 1000000); err != nil {
				t.Fatal(err)
			}
		}
	}
	ok(t, h.w.Execute(context.Background(), h.action(sh("echo x > a/b/left-behind"), root, true)))
	poolSize(t, spare, 3) // all but a/c
	h.runner.Before = func(r string) {
		second := inodes(r)
		for ino, d := range second {
			if was, ok := first[ino]; ok && was == "a/c" {
				t.Errorf("%s is the directory the last action put an attribute on", d)
			}
			p := filepath.Join(r, d)
			st, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			sys := st.Sys().(*syscall.Stat_t)
			if st.Mode() != os.ModeDir|0o755 || sys.Uid != 0 || sys.Gid != 0 {
				t.Errorf("%s: mode %v, owner %d:%d; want a new directory's", d, st.Mode(), sys.Uid, sys.Gid)
			}
			if n, _ := syscall.Listxattr(p, make([]byte, 256)); n != 0 {
				t.Errorf("%s has extended attributes", d)
			}
		}
		if _, err := os.Lstat(filepath.Join(r, "a/b/left-behind")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the last action's file: %v", err)
		}
		reused := 0
		for ino := range second {
			if _, ok := first[ino]; ok {
				reused++
			}
		}
		if reused != 3 {
			t.Errorf("%d of the last action's directories reused, want 3", reused)
		}
	}
	ok(t, h.w.Execute(context.Background(), h.action(sh("true"), root, true)))
	poolSize(t, spare, 4)

	h.runner.Before = nil
	h.runner.Err = errors.New("connection refused")
	h.w.Execute(context.Background(), h.action(sh("true"), root, true))
	// The failed action took all four and gave none back.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if ents, _ := os.ReadDir(filepath.Join(h.dir, "builds.trash")); len(ents) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the trash did not drain")
		}
	}
	if ents, _ := os.ReadDir(spare + ".dirs"); len(ents) != 0 {
		t.Errorf("after a failed Run, the pool holds %d directories", len(ents))
	}
}
