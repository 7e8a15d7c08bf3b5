package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// A name no filesystem can hold is refused before anything about it is
// recorded, with an error of bounded length: skipped entries (FIFOs,
// devices) and whiteouts are never created on disk, so nothing else would
// stop a layer of megabyte names from filling the runner's memory and
// layer.json.
func TestUnpackRefusesOverlongNames(t *testing.T) {
	long := strings.Repeat("n", nameMax+1)
	var deep string
	for len(deep) <= pathMax {
		deep += strings.Repeat("d", 200) + "/"
	}
	cases := []struct {
		name  string
		entry entry
		want  string
	}{
		{"FIFO", entry{Name: long, Type: tar.TypeFifo, Mode: 0o644, UID: 1}, "NAME_MAX"},
		{"device", entry{Name: "dev/" + long, Type: tar.TypeChar, Mode: 0o644}, "NAME_MAX"},
		{"whiteout", file("etc/.wh."+long, "", 0o644), "NAME_MAX"},
		{"opaque below a long directory", file(long+"/.wh..wh..opq", "", 0o644), "NAME_MAX"},
		{"long path", entry{Name: deep + "f", Type: tar.TypeFifo, Mode: 0o644, UID: 1}, "PATH_MAX"},
		{"hard link target", hardlink("x", long), "NAME_MAX"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			parent, cacheDir := hostileSetup(t)
			_, meta, err := unpackInto(t, cacheDir, false, tarBytes(t, tc.entry))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v (meta %+v), want an error naming %s", err, meta, tc.want)
			}
			if len(err.Error()) > 600 {
				t.Errorf("error of %d bytes: a hostile name must be cut short", len(err.Error()))
			}
			assertOutsideUntouched(t, parent)
		})
	}
	// The longest names the kernel takes are fine.
	_, cacheDir := hostileSetup(t)
	ok := strings.Repeat("o", nameMax)
	if _, _, err := unpackInto(t, cacheDir, false, tarBytes(t,
		entry{Name: ok, Type: tar.TypeFifo, Mode: 0o644, UID: 1}, file(".wh."+ok[4:], "", 0o644))); err != nil {
		t.Fatalf("names of NAME_MAX bytes: %v", err)
	}
}

// What a layer's metadata keeps of its entries (whiteouts, skipped
// entries, owners) counts toward the bound at its real size, and the same
// after a restart.
func TestRecordedNamesCountTowardTheBound(t *testing.T) {
	r := newTestRegistry(t)
	var entries []entry
	var names int64
	for i := range 20 {
		n := fmt.Sprintf("%03d-%s", i, strings.Repeat("w", 200))
		entries = append(entries, file(".wh."+n, "", 0o644),
			entry{Name: "f" + n, Type: tar.TypeFifo, Mode: 0o644, UID: 1})
		names += 2 * int64(len(n)) // the FIFO is both skipped and owned
	}
	r.push(t, "names:1", imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, entries...)))
	dir := t.TempDir()
	c := newTestCache(t, dir, r, nil)
	r.rootfs(t, c, "names:1").Release()
	pulled := countedBytes(c)
	if min := int64(len(entries))*entryCost + names; pulled < min {
		t.Fatalf("cache counts %d bytes for %d entries with %d bytes of recorded names, want at least %d", pulled, len(entries), names, min)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("closing the cache before the restart: %v", err)
	}
	c = newTestCache(t, dir, r, nil)
	if c.bytes != pulled {
		t.Fatalf("after a restart the cache counts %d bytes, after the pull %d", c.bytes, pulled)
	}
}

// A layer.json bigger than this code ever writes (an older runner wrote
// 2 GB ones for hostile layers, and then needed a minute to start) is
// dropped at start-up without being read, with the images using it.
func TestNewDropsOversizedLayerMeta(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "small:1", imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file("a", "a", 0o644))))
	dir := t.TempDir()
	c := newTestCache(t, dir, r, nil)
	r.rootfs(t, c, "small:1").Release()
	if err := c.Close(); err != nil {
		t.Fatalf("closing the cache: %v", err)
	}
	metas, _ := filepath.Glob(filepath.Join(dir, "layers", "*", "layer.json"))
	if len(metas) != 1 {
		t.Fatalf("layer.json files: %v", metas)
	}
	f, err := os.OpenFile(metas[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Valid JSON still (trailing white space), but past maxLayerJSONBytes.
	_, err = f.Write(bytes.Repeat([]byte{' '}, 100<<20))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	c = newTestCache(t, dir, r, nil)
	if len(c.layers) != 0 || c.images.Len() != 0 || c.bytes != 0 {
		t.Fatalf("after restart: %d layers, %d images, %d bytes; want the oversized layer and its image dropped", len(c.layers), c.images.Len(), c.bytes)
	}
	if _, err := os.Stat(filepath.Dir(metas[0])); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("layer directory left: %v", err)
	}
	r.rootfs(t, c, "small:1").Release() // fetched again
}

// The error of a refused layer names the layer, and nothing of it is kept.
func TestRootfsRefusesLayerWithOverlongNames(t *testing.T) {
	r := newTestRegistry(t)
	l := layerOf(t, compression.GZip, entry{Name: strings.Repeat("p", 64<<10), Type: tar.TypeFifo, Mode: 0o644, UID: 1})
	diffID, err := l.DiffID()
	if err != nil {
		t.Fatal(err)
	}
	r.push(t, "nb:1", imageOf(t, "linux/amd64", v1.Config{}, l))
	dir := t.TempDir()
	c := newTestCache(t, dir, r, nil)
	_, err = c.Rootfs(context.Background(), r.ref(t, "nb:1"))
	if err == nil || !strings.Contains(err.Error(), diffID.String()) || !strings.Contains(err.Error(), "PATH_MAX") || len(err.Error()) > 1000 {
		t.Fatalf("got %.2000v; want a short error naming layer %s and PATH_MAX", err, diffID)
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "layers")); len(ents) != 0 || len(c.layers) != 0 {
		t.Fatalf("layers kept: %d on disk, %d indexed", len(ents), len(c.layers))
	}
}

// An image whose layers fit the bound but whose flattened tree does not
// as well is refused, naming the image, the bound and what the tree
// costs: accepted, it was evicted after each action with every other
// image, and pulled again for the next (200,000 directories: 0.82 GB of
// layers and as much again of tree, against 1 GiB).
func TestRootfsRefusesImageWhoseTreeDoesNotFit(t *testing.T) {
	r := newTestRegistry(t)
	var dirs []entry
	for i := range 200 {
		dirs = append(dirs, dir(fmt.Sprintf("d%03d", i)))
	}
	r.push(t, "tree:1", imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, dirs...)))
	const bound = 1_200_000 // the layer: 200 entries of 4096; the tree as much again
	dir := t.TempDir()
	c := newTestCache(t, dir, r, func(o *Options) { o.MaxBytes = bound })
	rf, err := c.Rootfs(context.Background(), r.ref(t, "tree:1"))
	if err == nil {
		rf.Release()
		t.Fatal("image accepted; its layer and tree take more than the bound")
	}
	for _, want := range []string{r.Host + "/tree:1", "flattened tree", fmt.Sprint(bound)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(dir, "images")); len(ents) != 0 || c.images.Len() != 0 {
		t.Errorf("image kept: %d on disk, %d indexed", len(ents), c.images.Len())
	}
	// With room for both it is accepted.
	c2 := newTestCache(t, t.TempDir(), r, func(o *Options) { o.MaxBytes = 2 * bound })
	r.rootfs(t, c2, "tree:1").Release()
}

// An entry whose name the flattener cannot reach (4,000 bytes below the
// layer's directory: past PATH_MAX as a whole path) fails the image with
// a short error that keeps the cause: quoted whole, the name pushed
// "file name too long" past where the runner cuts the message.
func TestFlattenErrorsQuoteNamesShort(t *testing.T) {
	r := newTestRegistry(t)
	long := strings.TrimSuffix(strings.Repeat(strings.Repeat("n", 199)+"/", 20), "/") // 3,999 bytes
	r.push(t, "long:1", imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file(long, "x", 0o644))))
	c := newTestCache(t, t.TempDir(), r, nil)
	rf, err := c.Rootfs(context.Background(), r.ref(t, "long:1"))
	if err == nil {
		rf.Release() // flattening by descriptors would get here
		return
	}
	if !strings.Contains(err.Error(), "file name too long") || len(err.Error()) > 1000 {
		t.Fatalf("got an error of %d bytes: %.2000s; want a short one keeping the cause (file name too long)", len(err.Error()), err)
	}
}
