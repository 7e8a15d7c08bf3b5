package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/paddock-build/paddock/images/imagetest"
)

// `paddock images build` writes the role images as an OCI layout and
// pushes them to a registry (go-containerregistry's, in this process); a
// second build prints the same digests; `paddock images pull` pulls one
// back through the runner's image cache, which unpacks this machine's
// platform with the binary at /usr/local/bin/paddock; `paddock images
// load` reads the layout.
func TestImagesBuildPushPull(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	amd64, arm64 := write("paddock-amd64", "amd64 binary"), write("paddock-arm64", "arm64 binary")
	certs := write("ca.pem", "-----BEGIN CERTIFICATE-----\n")
	host := imagetest.Serve(t)
	build := func(out string, extra ...string) string {
		args := append([]string{"images", "build", "--binary", "linux/amd64=" + amd64, "--binary", "linux/arm64=" + arm64,
			"--ca-certs", certs, "--tag", "t1", "--out", filepath.Join(dir, out)}, extra...)
		cmd := exec.Command(binary, args...)
		cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("images build: %v\n%s", err, got)
		}
		return string(got)
	}
	first := build("layout1", "--push", host+"/paddock")
	digests := regexp.MustCompile(`(?m)^paddock-(\w+):t1 (sha256:[0-9a-f]{64})$`).FindAllStringSubmatch(first, -1)
	if len(digests) != 5 || !strings.Contains(first, "pushed "+host+"/paddock/paddock-storage@"+digests[0][2]) {
		t.Fatalf("images build printed no digest per role or no pushed storage image:\n%s", first)
	}
	if again := build("layout2"); !strings.HasPrefix(first, again) {
		t.Errorf("a second build printed other digests:\n%s\nthen\n%s", first, again)
	}

	// The storage index as the registry has it; the child for this machine.
	ref, err := name.ParseReference(host + "/paddock/paddock-storage:t1")
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := idx.IndexManifest()
	var child string
	for _, d := range m.Manifests {
		if d.Platform.Architecture == runtime.GOARCH {
			child = d.Digest.String()
		}
	}
	cache := filepath.Join(dir, "cache")
	out, err := exec.Command(binary, "images", "pull", "--cache", cache, "--insecure", host,
		"docker://"+host+"/paddock/paddock-storage:t1").Output()
	if err != nil || child == "" || !strings.Contains(string(out), child) {
		t.Fatalf("images pull: %v; want the %s image %s:\n%s", err, runtime.GOARCH, child, out)
	}
	root := regexp.MustCompile(`(?m)^  rootfs (\S+)$`).FindStringSubmatch(string(out))
	if root == nil {
		t.Fatalf("images pull printed no rootfs:\n%s", out)
	}
	if got, err := os.ReadFile(filepath.Join(root[1], "usr/local/bin/paddock")); err != nil || string(got) != runtime.GOARCH+" binary" {
		t.Errorf("the pulled rootfs's paddock: %q, %v; want this platform's binary", got, err)
	}

	out, err = exec.Command(binary, "images", "load", "--cache", filepath.Join(dir, "cache2"), filepath.Join(dir, "layout1")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), child) {
		t.Errorf("images load of the layout: %v; want the %s image %s:\n%s", err, runtime.GOARCH, child, out)
	}
	// Bad flags: a clear refusal naming the flag.
	out, err = exec.Command(binary, "images", "build", "--binary", "linux-amd64", "--out", filepath.Join(dir, "x")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "--binary") {
		t.Errorf("a --binary without a platform was accepted or not named: %v\n%s", err, out)
	}
}

// `paddock install DIR` copies the running binary to DIR/paddock, mode
// 0555, replacing an older copy.
func TestInstallCopiesItself(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shared")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "paddock"), []byte("an older paddock"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(binary, "install", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("install: %v\n%s", err, out)
	}
	want, _ := os.ReadFile(binary)
	got, err := os.ReadFile(filepath.Join(dir, "paddock"))
	if err != nil || string(got) != string(want) {
		t.Fatalf("DIR/paddock is not this binary (%d bytes, want %d): %v", len(got), len(want), err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, "paddock")); fi.Mode().Perm() != 0o555 {
		t.Errorf("DIR/paddock mode %v, want 0555", fi.Mode())
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("install left other files in DIR: %v", entries)
	}
	ver, err := exec.Command(filepath.Join(dir, "paddock"), "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(ver), "paddock ") {
		t.Errorf("the installed binary does not run: %v\n%s", err, ver)
	}
}
