package worker_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/worker"
)

// withAdopter replaces h's worker by one whose CAS (on the build
// directories' filesystem) keeps output files as they are.
func withAdopter(t *testing.T, h *harness) {
	t.Helper()
	var err error
	h.w, err = worker.New(worker.Options{
		ID: "w1", CAS: h.cas, AC: h.ac, Files: h.files, Runner: h.runner, Adopter: h.cas,
		BuildDir: filepath.Join(h.dir, "builds"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.w.Close)
}

// requireLeases skips the test where dir's filesystem cannot make unnamed
// files or grant file leases, without which no output is adopted.
func requireLeases(t *testing.T, dir string) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Skipf("no unnamed files here: %v", err)
	}
	unix.Close(fd)
	p := filepath.Join(dir, "lease-probe")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(p)
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_RDLCK); err != nil {
		t.Skipf("no file leases here: %v", err)
	}
	unix.FcntlInt(f.Fd(), unix.F_SETLEASE, unix.F_UNLCK)
}

// adopted runs script, which must print the inode of its output "out" as
// the last line of its stdout, and reports whether the CAS holds that
// inode as the output's blob (kept as it is) rather than a copy; it
// checks the blob's bytes either way.
func adopted(t *testing.T, h *harness, script, want string) (bool, string) {
	t.Helper()
	res := ok(t, h.w.Execute(context.Background(), h.action(sh(script+"; stat -c %i out", "out"), &repb.Directory{}, true)))
	if len(res.OutputFiles) != 1 {
		t.Fatalf("outputs %v", res.OutputFiles)
	}
	d, err := digest.FromProto(sha256, res.OutputFiles[0].Digest, "out")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(h.read(res.OutputFiles[0].Digest)); got != want {
		t.Fatalf("output %q, want %q", got, want)
	}
	lines := strings.Fields(string(h.read(res.StdoutDigest)))
	ino, err := strconv.ParseUint(lines[len(lines)-1], 10, 64)
	if err != nil {
		t.Fatalf("stdout %q", lines)
	}
	p, found := h.cas.Path(d)
	if !found {
		t.Fatal("output not in the CAS")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino == ino, p
}

// TestOutputFilesAreAdopted: with an Adopter, an output file the action
// left alone is the CAS's blob itself, the worker's and read-only; one
// with another name, an extended attribute, or a process still holding it
// open for writing is copied, and the copy holds the bytes it had.
func TestOutputFilesAreAdopted(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the worker gives each adopted output to itself")
	}
	h := newHarness(t)
	requireLeases(t, h.dir)
	withAdopter(t, h)

	kept, p := adopted(t, h, "echo plain > out; chmod 0775 out", "plain\n")
	if !kept {
		t.Error("a plain output was copied")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil || st.Mode&0o7777 != 0o444 || st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
		t.Errorf("adopted blob: mode %o, owner %d:%d, %v; want 0444 and the worker's", st.Mode, st.Uid, st.Gid, err)
	}

	if kept, _ := adopted(t, h, "echo linked > out; ln out other", "linked\n"); kept {
		t.Error("an output with a second name was adopted")
	}
	// An attribute the action set (here before the command, as the
	// action could have).
	h.runner.Before = func(root string) {
		if err := os.WriteFile(filepath.Join(root, "out"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Setxattr(filepath.Join(root, "out"), "user.mark", []byte("x"), 0); err != nil {
			t.Skipf("no user attributes here: %v", err)
		}
	}
	if kept, _ := adopted(t, h, "echo marked >> out", "marked\n"); kept {
		t.Error("an output with an extended attribute was adopted")
	}
	h.runner.Before = nil

	// A writer left behind: a process that outlived the command (as a
	// descriptor in flight in a socket would) with the file open for
	// writing. It appends after the upload; the blob must not change.
	mark := filepath.Join(h.dir, "late-written")
	script := "echo held > out; exec 3>>out; (sleep 0.3; echo late >&3; touch " + mark + ") >/dev/null 2>&1 & exec 3>&-"
	kept, p = adopted(t, h, script, "held\n")
	if kept {
		t.Error("an output held open for writing was adopted")
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(mark); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late writer did not write")
		}
	}
	if b, err := os.ReadFile(p); err != nil || string(b) != "held\n" {
		t.Errorf("the blob after the late write: %q, %v", b, err)
	}
}
