package images

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// manyFilesLayer is a layer shaped like a distribution's /usr: many small
// files in a few hundred directories, plus incompressible bulk of
// bulkBytes, so pulls are neither all-metadata nor all-bandwidth.
func manyFilesLayer(tb testing.TB, files int, bulkBytes int) v1.Layer {
	rng := rand.New(rand.NewPCG(1, 2))
	var es []entry
	for d := 0; d < files/20; d++ {
		es = append(es, dir(fmt.Sprintf("usr/share/d%03d", d)))
		for f := 0; f < 20; f++ {
			es = append(es, file(fmt.Sprintf("usr/share/d%03d/f%02d.txt", d, f),
				strings.Repeat(fmt.Sprintf("line %d of file %d\n", f, d), 1+rng.IntN(200)), 0o644))
		}
	}
	const chunk = 4 << 20
	for i := 0; i*chunk < bulkBytes; i++ {
		b := make([]byte, chunk)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		es = append(es, file(fmt.Sprintf("usr/lib/blob%02d.so", i), string(b), 0o755))
	}
	return layerOf(tb, compression.GZip, es...)
}

// benchImage is busybox plus about 48 MB more: ~50 MB unpacked.
func benchImage(b *testing.B) v1.Image {
	base := busyboxImage(b, "bench")
	ls, err := base.Layers()
	if err != nil {
		b.Fatal(err)
	}
	return imageOf(b, "linux/amd64", v1.Config{}, append(ls, manyFilesLayer(b, 2000, 44<<20))...)
}

// BenchmarkColdPull measures a pull of a ~50 MB image from the loopback
// registry into an empty cache: download, verification, unpack, flatten.
func BenchmarkColdPull(b *testing.B) {
	r := newTestRegistry(b)
	r.push(b, "bench:cold", benchImage(b))
	ref := r.ref(b, "bench:cold")
	var size int64
	for b.Loop() {
		b.StopTimer()
		dir, err := os.MkdirTemp(b.TempDir(), "cache")
		if err != nil {
			b.Fatal(err)
		}
		c, err := New(Options{Dir: dir, Insecure: []string{r.Host}})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		rf, err := c.Rootfs(context.Background(), ref)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		size = c.bytes
		rf.Release()
		if err := c.Close(); err != nil {
			b.Fatal(err)
		}
		os.RemoveAll(dir)
		b.StartTimer()
	}
	b.SetBytes(size)
}

func warmCache(b *testing.B) (*Cache, *testRegistry, string) {
	r := newTestRegistry(b)
	digest := r.push(b, "bench:warm", busyboxImage(b, "warm"))
	c, err := New(Options{Dir: b.TempDir(), Insecure: []string{r.Host}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = c.Close() }) // teardown: nothing uses the cache after it
	rf := r.rootfs(b, c, "bench:warm")
	rf.Release()
	return c, r, digest
}

// BenchmarkWarmResolve measures Rootfs+Release of a cached image by digest
// and by a fresh tag: parsing the platform value included. With the
// flattened tree this is also the whole per-action rootfs cost.
func BenchmarkWarmResolve(b *testing.B) {
	c, r, digest := warmCache(b)
	for name, value := range map[string]string{
		"digest": "docker://" + r.Host + "/bench@" + digest,
		"tag":    "docker://" + r.Host + "/bench:warm",
	} {
		b.Run(name, func(b *testing.B) {
			before := r.totalRequests()
			for b.Loop() {
				ref, _, err := ParseReference(value)
				if err != nil {
					b.Fatal(err)
				}
				rf, err := c.Rootfs(context.Background(), ref)
				if err != nil {
					b.Fatal(err)
				}
				rf.Release()
			}
			if n := r.totalRequests() - before; n != 0 {
				b.Fatalf("warm resolution made %d registry requests", n)
			}
		})
	}
}

// BenchmarkRootfsPerAction compares the two ways to present an image to
// an action: a hold on the shared flattened tree (what Cache does), and a
// read-only overlayfs mount of the image's layers plus its unmount (the
// alternative, measured here to justify the choice; needs root).
func BenchmarkRootfsPerAction(b *testing.B) {
	c, _, digest := warmCache(b)
	b.Run("flattened", func(b *testing.B) {
		ref := Reference{Registry: "x.invalid", Repository: "bench", Digest: digest}
		for b.Loop() {
			rf, err := c.Rootfs(context.Background(), ref)
			if err != nil {
				b.Fatal(err)
			}
			rf.Release()
		}
	})
	b.Run("overlay", func(b *testing.B) {
		requireRoot(b)
		img, _ := c.images.Peek(digest)
		rec := img.rec
		var lower []string
		for i := len(rec.Layers) - 1; i >= 0; i-- {
			lower = append(lower, filepath.Join(c.store.layerDir(rec.Layers[i]), "root"))
		}
		target := b.TempDir()
		data := "lowerdir=" + strings.Join(lower, ":")
		for b.Loop() {
			if err := unix.Mount("overlay", target, "overlay", unix.MS_RDONLY, data); err != nil {
				b.Skipf("overlay mount: %v", err)
			}
			if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFlatten measures the once-per-image cost of the flattened tree
// for an image of ~2,000 files.
func BenchmarkFlatten(b *testing.B) {
	c, _, digest := warmCache(b)
	l := manyFilesLayer(b, 2000, 0)
	diffID, _ := l.DiffID()
	c.pin([]string{diffID.String()}, 1)
	meta, err := c.ensureLayer(context.Background(), nil, l, diffID.String(), "", nil)
	if err != nil {
		b.Fatal(err)
	}
	var layers []flatLayer
	img, _ := c.images.Peek(digest)
	for _, d := range img.rec.Layers {
		layers = append(layers, flatLayer{root: filepath.Join(c.store.layerDir(d), "root"), meta: c.layers[d].meta})
	}
	layers = append(layers, flatLayer{root: filepath.Join(c.store.layerDir(meta.DiffID), "root"), meta: meta})
	for b.Loop() {
		b.StopTimer()
		dst, err := os.MkdirTemp(c.store.tmp(), "flat")
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if _, err := flatten(context.Background(), dst, layers, -1); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(dst)
		b.StartTimer()
	}
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root")
	}
}
