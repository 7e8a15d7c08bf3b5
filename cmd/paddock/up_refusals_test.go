package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestUpOnAPortInUseLeavesNothing: `paddock up` whose gRPC port, or the
// HTTP port it was given, is taken exits naming the address and its flag
// before it makes its data directory (it used to make its roles'
// directories and socket and replay the journal first).
func TestUpOnAPortInUseLeavesNothing(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	addr := taken.Addr().String()
	for flag, args := range map[string][]string{
		"--listen (storage.listen)": {"--listen", addr, "--http-listen", "127.0.0.1:0"},
		"--http-listen":             {"--listen", "127.0.0.1:0", "--http-listen", addr},
	} {
		data := filepath.Join(t.TempDir(), "data")
		out, err := exec.Command(binary, append([]string{"up", "--data", data}, args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), addr) || !strings.Contains(string(out), "address already in use") || !strings.Contains(string(out), flag+":") {
			t.Errorf("up %v with %s taken: %v\n%s\nwant a refusal naming it", args, addr, err, out)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("up %v left its data directory: %v", args, err)
		}
	}
}

// TestUpInAnUnsearchableDirectoryLeavesNothing: a data directory inside
// one that others cannot search (the sandboxes' uids could never mount
// their input roots) is refused naming that directory, before it is made.
func TestUpInAnUnsearchableDirectoryLeavesNothing(t *testing.T) {
	parent := t.TempDir()
	if err := os.Chmod(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	data := filepath.Join(parent, "farm", "data")
	out, err := exec.Command(binary, "up", "--data", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "inside "+parent+" (mode 0700)") {
		t.Errorf("up in %s: %v\n%s\nwant a refusal naming it", parent, err, out)
	}
	if _, err := os.Stat(filepath.Join(parent, "farm")); !os.IsNotExist(err) {
		t.Errorf("up left directories in %s: %v", parent, err)
	}
}

// TestUpOnAFileSaysItIsNotADirectory: a --data that is a regular file (or
// lies under one) is refused as not a directory. The file's mode was
// checked first, and the refusal asked for a chmod o+x that could not
// help.
func TestUpOnAFileSaysItIsNotADirectory(t *testing.T) {
	file := filepath.Join(t.TempDir(), "afile")
	if err := os.WriteFile(file, []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, data := range []string{file, filepath.Join(file, "data")} {
		out, err := exec.Command(binary, "up", "--data", data, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0").CombinedOutput()
		if err == nil || !strings.Contains(string(out), file+" is not a directory") || strings.Contains(string(out), "chmod") {
			t.Errorf("up --data %s: %v\n%s\nwant a refusal saying %s is not a directory", data, err, out, file)
		}
	}
}
