package client

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestFileBlobInStaysInsideItsRoot: a file hashed inside a root and then
// swapped for a symlink leading out of it (a tree anyone can write, while
// a server stalls the upload) is not read through the link, by ByteStream
// (open) or batch (bytes); a link that stays inside is followed, and the
// size check or the server's hash refuses the other bytes.
func TestFileBlobInStaysInsideItsRoot(t *testing.T) {
	dir := t.TempDir()
	top := filepath.Join(dir, "root")
	for name, data := range map[string]string{"secret": "TOP SECRET: root:$6$hash", "root/in.bin": "the input, 24 bytes long", "root/other": "another file inside"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(top)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	b, err := FileBlobIn(root, "in.bin")
	if err != nil {
		t.Fatal(err)
	}
	swap := func(target string) {
		t.Helper()
		if err := os.Remove(filepath.Join(top, "in.bin")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(top, "in.bin")); err != nil {
			t.Fatal(err)
		}
	}

	swap("../secret")
	if r, err := b.open(); err == nil {
		got, _ := io.ReadAll(r)
		r.Close()
		t.Fatalf("open through a link out of the root read %q", got)
	}
	if got, err := b.bytes(); err == nil {
		t.Fatalf("bytes through a link out of the root read %q", got)
	}
	if _, err := FileBlobIn(root, "in.bin"); err == nil {
		t.Fatal("FileBlobIn hashed a file through a link out of its root")
	}

	swap("other")
	r, err := b.open()
	if err != nil {
		t.Fatalf("open through a link inside the root: %v", err)
	}
	got, _ := io.ReadAll(r)
	r.Close()
	if string(got) != "another file inside" {
		t.Fatalf("read %q through a link inside the root", got)
	}
	if _, err := b.bytes(); err == nil || !strings.Contains(err.Error(), "changed") {
		t.Fatalf("bytes of a file of another size: %v, want it to say the file changed", err)
	}
}
