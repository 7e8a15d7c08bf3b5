package main

import (
	"io"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/paddock-build/paddock/images"
)

// `paddock images load` imports a `docker save` tarball into a cache
// directory and prints the image's digest and name.
func TestImagesLoadDockerSaveTarball(t *testing.T) {
	dir := t.TempDir()
	file, img := dockerSave(t, dir, "registry.example/team/tool:v1", 2048)
	cache := filepath.Join(dir, "cache")
	// The file first, as the README writes it.
	out, err := exec.Command(binary, "images", "load", file, "--cache", cache).CombinedOutput()
	if err != nil {
		t.Fatalf("images load: %v\n%s", err, out)
	}
	digest, _ := img.Digest()
	if !strings.Contains(string(out), digest.String()) || !strings.Contains(string(out), "registry.example/team/tool:v1") {
		t.Fatalf("output does not name the image's digest %s and tag:\n%s", digest, out)
	}
	// Not a tarball or layout: a clear refusal naming the file.
	bad := filepath.Join(dir, "notes.txt")
	if err := exec.Command("sh", "-c", "echo hello > "+bad).Run(); err != nil {
		t.Fatalf("writing %s: %v", bad, err)
	}
	out, err = exec.Command(binary, "images", "load", "--cache", filepath.Join(dir, "cache2"), bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "notes.txt") {
		t.Fatalf("a text file was accepted or not named: %v\n%s", err, out)
	}
}

// TestImageCacheFlagsAfterOperands: `images load` and `images pull` take
// their flags after the files or images too (the README's `images load
// image.tar --cache DIR` once loaded "--cache" and DIR as files, with no
// cache); after "--" everything is an operand.
func TestImageCacheFlagsAfterOperands(t *testing.T) {
	for _, c := range []struct {
		args     []string
		operands []string
		dir      string
	}{
		{[]string{"--cache", "/c", "a.tar"}, []string{"a.tar"}, "/c"},
		{[]string{"a.tar", "--cache", "/c"}, []string{"a.tar"}, "/c"},
		{[]string{"a.tar", "--cache=/c", "b.tar", "--platform", "linux/arm64", "c.tar"}, []string{"a.tar", "b.tar", "c.tar"}, "/c"},
		{[]string{"--cache", "/c", "--", "a.tar", "--platform"}, []string{"a.tar", "--platform"}, "/c"},
	} {
		fs, f := newImageCacheFlagSet("images load")
		fs.SetOutput(io.Discard)
		got, err := f.parse(fs, c.args, "FILE")
		if err != nil || !slices.Equal(got, c.operands) || f.dir != c.dir {
			t.Errorf("parse %q: operands %q, --cache %q, %v; want %q and %q", c.args, got, f.dir, err, c.operands, c.dir)
		}
	}
	fs, f := newImageCacheFlagSet("images load")
	fs.SetOutput(io.Discard)
	if _, err := f.parse(fs, []string{"a.tar"}, "FILE"); err == nil || !strings.Contains(err.Error(), "--cache") {
		t.Errorf("parse without --cache: %v, want an error naming --cache", err)
	}
}

// TestImagesLoadIsBounded: `images load` and `pull` unpack within the
// runner's bound (images.max_bytes, 20 GiB unless --max-bytes says
// otherwise): an image that does not fit is refused, not unpacked. Without
// a bound, a 1 MB layer that unpacks to 1 GiB went into the cache, which
// the runner then refused to use (outside probe).
func TestImagesLoadIsBounded(t *testing.T) {
	dir := t.TempDir()
	file, _ := dockerSave(t, dir, "registry.example/team/big:v1", 64<<10)
	out, err := exec.Command(binary, "images", "load", file, "--cache", filepath.Join(dir, "small"), "--max-bytes", "64KiB").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "cache bound") {
		t.Fatalf("images load of 128 KiB of layers into a 64 KiB cache: %v\n%s", err, out)
	}
	if _, f := newImageCacheFlagSet("images pull"); f.maxBytes != images.DefaultMaxBytes {
		t.Errorf("--max-bytes defaults to %d, want the runner's %d", f.maxBytes, images.DefaultMaxBytes)
	}
	if out, err := exec.Command(binary, "images", "load", file, "--cache", filepath.Join(dir, "default")).CombinedOutput(); err != nil {
		t.Fatalf("images load within the default bound: %v\n%s", err, out)
	}
}

// dockerSave writes a `docker save` tarball of a random image of two
// layers of layerBytes each, named tag, in dir.
func dockerSave(t *testing.T, dir, tag string, layerBytes int64) (string, v1.Image) {
	t.Helper()
	img, err := random.Image(layerBytes, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(file, ref, img); err != nil {
		t.Fatal(err)
	}
	return file, img
}
