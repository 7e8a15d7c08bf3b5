package images

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Whiteouts and opaque directories whose names are not valid UTF-8 hold
// after a restart: layer.json kept them with U+FFFD for their bad bytes,
// so an image built after the restart on the same layers brought back the
// files they had removed.
func TestWhiteoutsOfNonUTF8NamesHoldAfterARestart(t *testing.T) {
	r := newTestRegistry(t)
	lower := layerOf(t, compression.GZip, file("bad\xff\xfe", "removed", 0o644), file("opq\xff/inside", "hidden", 0o644), file("keep", "kept", 0o644))
	upper := layerOf(t, compression.GZip, file(".wh.bad\xff\xfe", "", 0o644), file("opq\xff/.wh..wh..opq", "", 0o644))
	r.push(t, "names:1", imageOf(t, "linux/amd64", v1.Config{}, lower, upper))
	r.push(t, "names:2", imageOf(t, "linux/amd64", v1.Config{}, lower, upper, layerOf(t, compression.GZip, file("top", "x", 0o644))))
	dir := t.TempDir()
	check := func(c *Cache, tag string) {
		t.Helper()
		rf := r.rootfs(t, c, tag)
		defer rf.Release()
		if _, err := os.Lstat(filepath.Join(rf.Path, "keep")); err != nil {
			t.Fatalf("%s: keep: %v", tag, err)
		}
		for _, gone := range []string{"bad\xff\xfe", "opq\xff/inside"} {
			if _, err := os.Lstat(filepath.Join(rf.Path, gone)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("%s: %q, which a layer removed, is there (%v)", tag, gone, err)
			}
		}
	}
	c := newTestCache(t, dir, r, nil)
	check(c, "names:1")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	check(newTestCache(t, dir, r, nil), "names:2")
}

// A layer.json written before names were kept whole, with a name whose
// bad bytes became U+FFFD, is not read (its layer is fetched again); a
// name holding U+FFFD itself is kept whole, and read back as it was.
func TestLayerMetaWithReplacedNamesIsNotRead(t *testing.T) {
	var m layerMeta
	if err := json.Unmarshal([]byte(`{"diffID":"sha256:00","whiteouts":["bad\ufffd\ufffd"]}`), &m); !errors.Is(err, errReplacedName) {
		t.Fatalf("an old layer.json with a replaced name: %v, want errReplacedName", err)
	}
	in := layerMeta{Whiteouts: pathNames{"real\ufffd", "bad\xff", "plain"}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var out layerMeta
	if err := json.Unmarshal(b, &out); err != nil || !slices.Equal(out.Whiteouts, in.Whiteouts) {
		t.Fatalf("names %q came back as %q (%v)", in.Whiteouts, out.Whiteouts, err)
	}
}
