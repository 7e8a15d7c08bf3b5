package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"

	"github.com/paddock-build/paddock/internal/grpctest"
)

// binary is the paddock command built once for these tests.
var binary string

func TestMain(m *testing.M) {
	if sandboxReexec() {
		return
	}
	dir, err := os.MkdirTemp("", "paddock-cmd-test")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "paddock")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		_, _ = os.Stderr.Write(out) // the build's errors; it panics next either way
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// start runs the binary with args and returns the address it prints on
// its "listening on" line.
func start(t *testing.T, args ...string) (string, *exec.Cmd) {
	t.Helper()
	cmd, stdout := launch(t, args...)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if _, addr, ok := strings.Cut(sc.Text(), " listening on "); ok {
				lines <- addr
				return
			}
		}
		close(lines)
	}()
	select {
	case addr, ok := <-lines:
		if !ok {
			t.Fatalf("%v exited without serving", args)
		}
		return addr, cmd
	case <-time.After(60 * time.Second):
		t.Fatalf("%v did not start serving within a minute", args)
	}
	return "", nil
}

// startUntilBanner starts the binary with args, its stderr kept in the
// buffer returned for the test to read its log, and reads its stdout up
// to the line starting with banner, whose rest it returns; if the command
// exits first the test fails with its stderr. It is killed, unless it has
// exited, when the test ends.
func startUntilBanner(t *testing.T, banner string, args ...string) (*exec.Cmd, string, *bytes.Buffer) {
	t.Helper()
	stderr := &bytes.Buffer{}
	cmd, stdout := launchTo(t, stderr, args...)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), banner); ok {
			return cmd, rest, stderr
		}
	}
	_ = cmd.Wait() // it failed; its stderr, next, says why
	t.Fatalf("paddock %v exited before printing %q:\n%s", args, banner, stderr.String())
	return nil, "", nil
}

// launch starts the binary with args, killed when the test ends, and
// returns it and its stdout (its stderr is the test's).
func launch(t *testing.T, args ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	return launchTo(t, os.Stderr, args...)
}

// launchTo is launch with the command's stderr written to stderr.
func launchTo(t *testing.T, stderr io.Writer, args ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // may have exited, and been waited for, already
	return cmd, stdout
}

func TestStorageCommandServesFromConfig(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "storage.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\nlisten: 127.0.0.1:0\ndir: "+filepath.Join(dir, "data")+"\nmax_batch_total_size_bytes: 2MiB\nmax_bytes: 64MiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	addr, cmd := start(t, "storage", "--config", cfg)
	conn := grpctest.Dial(t, addr)
	caps, err := repb.NewCapabilitiesClient(conn).GetCapabilities(context.Background(), &repb.GetCapabilitiesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if caps.CacheCapabilities.MaxBatchTotalSizeBytes != 2<<20 {
		t.Fatalf("config not applied: max batch %d", caps.CacheCapabilities.MaxBatchTotalSizeBytes)
	}
	if got := caps.CacheCapabilities.MaxCasBlobSizeBytes; got != 64<<20-4096 {
		t.Fatalf("max_cas_blob_size_bytes %d, want the largest blob a 64 MiB CAS holds, %d", got, 64<<20-4096)
	}
	if _, err := os.Stat(filepath.Join(dir, "data", "cas")); err != nil {
		t.Fatalf("data directory not created: %v", err)
	}
	stopCleanly(t, cmd, "storage", syscall.SIGINT)
}

func TestStorageCommandRefusesUnknownConfigKeys(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "storage.yaml")
	if err := os.WriteFile(cfg, []byte("version: 1\nlisten: 127.0.0.1:0\nmax_bytse: 1GiB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "storage", "--config", cfg).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "max_bytse") {
		t.Fatalf("unknown key accepted or not named: %v\n%s", err, out)
	}
}

func TestExampleConfigIsValidForTheCommand(t *testing.T) {
	// configs/storage.yaml as shipped, with only the address and directory
	// overridden by flags.
	addr, cmd := start(t, "storage", "--config", "../../configs/storage.yaml", "--listen", "127.0.0.1:0", "--dir", t.TempDir())
	if addr == "" {
		t.Fatal("no address")
	}
	stopCleanly(t, cmd, "storage", syscall.SIGTERM)
}

func TestUnknownCommand(t *testing.T) {
	out, err := exec.Command(binary, "frobnicate").CombinedOutput()
	if err == nil || !strings.Contains(string(out), `unknown command "frobnicate"`) {
		t.Fatalf("%v\n%s", err, out)
	}
}

// stopCleanly sends sig to what cmd runs (role, for the messages) and fails
// the test unless it then exits with status 0.
func stopCleanly(t *testing.T, cmd *exec.Cmd, role string, sig syscall.Signal) {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", role, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s did not stop cleanly on %v: %v", role, sig, err)
	}
}
