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

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/worker"
)

// withStreamDir replaces h's worker by one that captures output in
// h.dir/streams, and returns that directory.
func withStreamDir(t *testing.T, h *harness) string {
	t.Helper()
	dir := filepath.Join(h.dir, "streams")
	if err := os.MkdirAll(filepath.Join(dir, "stale"), 0o755); err != nil { // a previous worker's
		t.Fatal(err)
	}
	var err error
	h.w, err = worker.New(worker.Options{
		ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner,
		BuildDir: filepath.Join(h.dir, "builds"), StreamDir: dir, Concurrency: 4,
	})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("stream directory: %v, %v; want mode 0700", st, err)
	}
	return dir
}

// streamFiles returns the files in dir by name, with their inode and size.
func streamFiles(t *testing.T, dir string) map[string][2]int64 {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][2]int64{}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = [2]int64{int64(info.Sys().(*syscall.Stat_t).Ino), info.Size()}
	}
	return out
}

// TestStreamFilesReused: with a StreamDir, one action after another
// captures its stdout and stderr in the same two files, emptied after
// each action; each result has its own output, and the build directory
// is cleaned as without.
func TestStreamFilesReused(t *testing.T) {
	h := newHarness(t)
	dir := withStreamDir(t, h)
	var first map[string][2]int64
	for i := range 3 {
		want := fmt.Sprintf("action %d", i)
		res := ok(t, h.w.Execute(context.Background(), h.action(sh("echo "+want+"; echo "+want+" >&2"), &repb.Directory{}, true)))
		if got := string(h.read(res.StdoutDigest)); got != want+"\n" {
			t.Errorf("action %d: stdout %q", i, got)
		}
		if got := string(h.read(res.StderrDigest)); got != want+"\n" {
			t.Errorf("action %d: stderr %q", i, got)
		}
		files := streamFiles(t, dir)
		if len(files) != 2 {
			t.Fatalf("after action %d, stream directory holds %v, want one stdout and one stderr", i, files)
		}
		for name, f := range files {
			if f[1] != 0 {
				t.Errorf("after action %d, %s holds %d bytes, want it emptied", i, name, f[1])
			}
		}
		if first == nil {
			first = files
		} else if fmt.Sprint(files) != fmt.Sprint(first) {
			t.Errorf("after action %d, stream files %v, want the first action's %v reused", i, files, first)
		}
		if entries, _ := os.ReadDir(filepath.Join(h.dir, "builds")); len(entries) != 0 {
			t.Errorf("build directory not cleaned: %v", entries)
		}
	}
}

// TestStreamFilesConcurrent: actions running at once each get their own
// pair, and their own output.
func TestStreamFilesConcurrent(t *testing.T) {
	h := newHarness(t)
	dir := withStreamDir(t, h)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := range 4 {
		a := h.action(sh(fmt.Sprintf("echo %d; sleep 0.2; echo %d", i, i)), &repb.Directory{}, true)
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := h.w.Execute(context.Background(), a)
			if resp.Status.GetCode() != 0 {
				errs <- fmt.Errorf("action %d: %v", i, resp.Status)
				return
			}
			if got, want := string(h.read(resp.Result.StdoutDigest)), fmt.Sprintf("%d\n%d\n", i, i); got != want {
				errs <- fmt.Errorf("action %d: stdout %q, want %q", i, got, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if files := streamFiles(t, dir); len(files) > 8 {
		t.Errorf("stream files %v for 4 actions", files)
	}
}

// TestStreamFilesRemovedAfterRunnerFailure: when the Run call fails (a
// sandbox may still be writing), the pair is removed, not reused.
func TestStreamFilesRemovedAfterRunnerFailure(t *testing.T) {
	h := newHarness(t)
	dir := withStreamDir(t, h)
	ok(t, h.w.Execute(context.Background(), h.action(sh("echo before"), &repb.Directory{}, true)))
	if files := streamFiles(t, dir); len(files) != 2 {
		t.Fatalf("stream files %v, want a pair", files)
	}
	h.runner.Err = errors.New("connection refused")
	resp := h.w.Execute(context.Background(), h.action(sh("true"), &repb.Directory{}, true))
	if status.FromProto(resp.Status).Code() != codes.Unavailable {
		t.Fatalf("status %v, want UNAVAILABLE", resp.Status)
	}
	if files := streamFiles(t, dir); len(files) != 0 {
		t.Errorf("after a failed Run, stream files %v are left to be reused", files)
	}
	h.runner.Err = nil
	res := ok(t, h.w.Execute(context.Background(), h.action(sh("echo after"), &repb.Directory{}, true)))
	if got := string(h.read(res.StdoutDigest)); got != "after\n" {
		t.Errorf("stdout %q", got)
	}
}
