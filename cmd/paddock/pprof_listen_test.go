package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPprofListenLoopbackOnly(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:0", "127.0.0.1"} {
		if _, err := startPprof(addr, logger); err == nil {
			t.Errorf("startPprof(%q) accepted a non-loopback or malformed address", addr)
		}
	}
	addr, err := startPprof("127.0.0.1:0", logger)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("GET /debug/pprof/cmdline: %s, %d bytes", resp.Status, len(body))
	}
}

// TestRolesServePprof: storage, the scheduler and the worker take
// --pprof-listen as up and the runner do (docs/configuration.md says
// every role does), serve the profiles there and log the address.
func TestRolesServePprof(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "storage")},
		{"scheduler", "--listen", "127.0.0.1:0", "--storage", "127.0.0.1:1"},
		{"worker", "--scheduler", "127.0.0.1:1", "--storage", "127.0.0.1:1", "--runner", filepath.Join(dir, "none.sock"), "--dir", filepath.Join(dir, "worker")},
	} {
		t.Run(args[0], func(t *testing.T) {
			addr := startLogged(t, "pprof listening", append(args, "--pprof-listen", "127.0.0.1:0", "--log-format", "json")...)["addr"]
			resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), args[0]) {
				t.Fatalf("GET /debug/pprof/cmdline: %s, %q", resp.Status, body)
			}
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, "storage", "--listen", "127.0.0.1:0", "--dir", filepath.Join(dir, "s2"), "--pprof-listen", "0.0.0.0:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "want a loopback address") {
		t.Fatalf("storage --pprof-listen 0.0.0.0:0: %v\n%s; want a refusal", err, out)
	}
}

// startLogged starts the binary with args (which must ask for JSON logs),
// killed when the test ends, and returns the first log line on its stderr
// whose message is msg, its values as strings.
func startLogged(t *testing.T, msg string, args ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }) // may have exited, and been waited for, already
	found := make(chan map[string]string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var line map[string]any
			if json.Unmarshal(sc.Bytes(), &line) == nil && line["msg"] == msg {
				m := map[string]string{}
				for k, v := range line {
					m[k] = fmt.Sprint(v)
				}
				found <- m
				break
			}
		}
		_, _ = io.Copy(io.Discard, stderr) // the rest, until the child ends (Wait may close the pipe first)
		close(found)
	}()
	select {
	case m, ok := <-found:
		if !ok {
			t.Fatalf("paddock %s exited without logging %q", strings.Join(args, " "), msg)
		}
		return m
	case <-time.After(time.Minute):
		t.Fatalf("paddock %s did not log %q within a minute", strings.Join(args, " "), msg)
	}
	return nil
}
