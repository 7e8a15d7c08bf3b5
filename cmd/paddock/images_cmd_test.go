package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// `paddock images load` imports a `docker save` tarball into a cache
// directory and prints the image's digest and name.
func TestImagesLoadDockerSaveTarball(t *testing.T) {
	img, err := random.Image(2048, 2)
	if err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag("registry.example/team/tool:v1")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "image.tar")
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	out, err := exec.Command(binary, "images", "load", "--cache", cache, file).CombinedOutput()
	if err != nil {
		t.Fatalf("images load: %v\n%s", err, out)
	}
	digest, _ := img.Digest()
	if !strings.Contains(string(out), digest.String()) || !strings.Contains(string(out), "registry.example/team/tool:v1") {
		t.Fatalf("output does not name the image's digest %s and tag:\n%s", digest, out)
	}
	// Not a tarball or layout: a clear refusal naming the file.
	bad := filepath.Join(dir, "notes.txt")
	exec.Command("sh", "-c", "echo hello > "+bad).Run()
	out, err = exec.Command(binary, "images", "load", "--cache", filepath.Join(dir, "cache2"), bad).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "notes.txt") {
		t.Fatalf("a text file was accepted or not named: %v\n%s", err, out)
	}
}
