package images

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/prometheus/client_golang/prometheus"
)

// blobGetsOf counts r's GETs of the blob digest.
func blobGetsOf(r *testRegistry, digest v1.Hash) int {
	gets, _ := r.counts()
	n := 0
	for p, c := range gets {
		if strings.HasSuffix(p, "/blobs/"+digest.String()) {
			n += c
		}
	}
	return n
}

// A config blob is read whole: one the manifest says is larger than any
// real config is refused before it is downloaded.
func TestRefusesOversizedConfig(t *testing.T) {
	r := newTestRegistry(t)
	img := imageOf(t, "linux/amd64", v1.Config{Env: []string{"BIG=" + strings.Repeat("x", maxConfigBytes)}},
		layerOf(t, compression.GZip, file("a", "a", 0o644)))
	r.push(t, "cfg:1", img)
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	c := newTestCache(t, t.TempDir(), r, nil)
	_, err = c.Rootfs(context.Background(), r.ref(t, "cfg:1"))
	if err == nil || !strings.Contains(err.Error(), "config of") {
		t.Fatalf("got %v, want the config refused for its size", err)
	}
	if n := blobGetsOf(r, m.Config.Digest); n != 0 {
		t.Fatalf("config downloaded %d times", n)
	}
}

// Pulls ask for no content encoding, so that net/http never decompresses
// a body transparently, beyond the size the manifest gives.
func TestPullsAskForIdentityEncoding(t *testing.T) {
	var mu sync.Mutex
	encodings := map[string]bool{}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet {
			mu.Lock()
			encodings[req.Header.Get("Accept-Encoding")] = true
			mu.Unlock()
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r := &testRegistry{Host: strings.TrimPrefix(srv.URL, "http://"), blobGets: map[string]int{}}
	r.push(t, "enc:1", imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file("a", "a", 0o644))))
	mu.Lock()
	clear(encodings) // the push's own requests
	mu.Unlock()
	c := newTestCache(t, t.TempDir(), r, nil)
	r.rootfs(t, c, "enc:1").Release()
	mu.Lock()
	defer mu.Unlock()
	if len(encodings) != 1 || !encodings["identity"] {
		t.Fatalf("Accept-Encoding of the pull's GETs: %v, want only identity", encodings)
	}
}

// An image that could never fit the cache is refused: by its compressed
// layers before anything is downloaded, or by its unpacked layers (each
// within the bound alone) before it is assembled, and those layers are
// evicted. Images in use are never evicted, so a larger image would stay
// over the bound for as long as it runs.
func TestRefusesImageLargerThanBound(t *testing.T) {
	r := newTestRegistry(t)
	var random, compressible []v1.Layer
	for i := range 5 {
		b := make([]byte, 20<<10)
		if _, err := rand.Read(b); err != nil {
			t.Fatal(err)
		}
		random = append(random, layerOf(t, compression.GZip, file("r", string(b), 0o644)))
		compressible = append(compressible, layerOf(t, compression.GZip,
			file(fmt.Sprint("c", i), strings.Repeat(fmt.Sprint(i), 20<<10), 0o644)))
	}
	r.push(t, "random:1", imageOf(t, "linux/amd64", v1.Config{}, random...))
	r.push(t, "compressible:1", imageOf(t, "linux/amd64", v1.Config{}, compressible...))
	const bound = 64 << 10
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.MaxBytes = bound })

	_, err := c.Rootfs(context.Background(), r.ref(t, "random:1"))
	if err == nil || !strings.Contains(err.Error(), "compressed are larger than the cache bound") {
		t.Fatalf("random:1: got %v, want it refused for its compressed size", err)
	}
	for _, l := range random {
		if d, _ := l.Digest(); blobGetsOf(r, d) != 0 {
			t.Fatalf("layer %s of a refused image downloaded", d)
		}
	}
	_, err = c.Rootfs(context.Background(), r.ref(t, "compressible:1"))
	if err == nil || !strings.Contains(err.Error(), "unpack to") {
		t.Fatalf("compressible:1: got %v, want it refused for its unpacked size", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.images.Len() != 0 || c.bytes > bound {
		t.Fatalf("after refusals: %d images, %d bytes (bound %d)", c.images.Len(), c.bytes, bound)
	}
}

// An image lists at most maxLayers layers: flattening merges every
// listing of a layer again, so one small layer listed thousands of times
// kept a runner busy long after the pull was given up.
func TestRefusesTooManyLayers(t *testing.T) {
	r := newTestRegistry(t)
	l := layerOf(t, compression.GZip, file("a", "a", 0o644))
	layers := make([]v1.Layer, maxLayers+1)
	for i := range layers {
		layers[i] = l
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	r.push(t, "many:1", img)
	c := newTestCache(t, t.TempDir(), r, nil)
	_, err = c.Rootfs(context.Background(), r.ref(t, "many:1"))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%d layers, more than %d", maxLayers+1, maxLayers)) {
		t.Fatalf("got %v, want the image refused for its layer count", err)
	}
	if d, _ := l.Digest(); blobGetsOf(r, d) != 0 {
		t.Fatalf("layer of a refused image downloaded")
	}
}

// Flattening stops when the pull's context ends, between entries.
func TestFlattenStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "layer")
	if err := os.MkdirAll(root, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := os.WriteFile(filepath.Join(root, fmt.Sprint(i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dst := filepath.Join(dir, "rootfs")
	if err := os.Mkdir(dst, 0o755); err != nil {
		t.Fatal(err)
	}
	l := flatLayer{root: root, meta: &layerMeta{DiffID: "sha256:x"}}
	_, err := flatten(ctx, dst, []flatLayer{l, l, l}, -1)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 0 {
		t.Fatalf("%d entries merged after cancellation", len(ents))
	}
}

// Each image's rootfs has its own directories (and links), which count
// toward the bound beside the layers they share, after a restart too:
// eleven images sharing one layer of 20,000 directories used 866 MB of
// disk while the cache counted 84 MB.
func TestImageRootsCountTowardTheBound(t *testing.T) {
	r := newTestRegistry(t)
	var dirs []entry
	for i := range 50 {
		dirs = append(dirs, dir(fmt.Sprint("d", i)))
	}
	shared := layerOf(t, compression.GZip, dirs...)
	for i := range 2 {
		r.push(t, fmt.Sprint("dirs:", i), imageOf(t, "linux/amd64", v1.Config{Env: []string{fmt.Sprint("I=", i)}}, shared))
	}
	dir := t.TempDir()
	c := newTestCache(t, dir, r, nil)
	r.rootfs(t, c, "dirs:0").Release()
	one := countedBytes(c)
	r.rootfs(t, c, "dirs:1").Release()
	two := countedBytes(c)
	if two-one < 50*entryCost {
		t.Fatalf("a second image of the shared layer counts %d bytes, want at least %d for its 50 directories", two-one, 50*entryCost)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("closing the cache before the restart: %v", err)
	}
	c = newTestCache(t, dir, r, nil)
	if c.bytes != two {
		t.Fatalf("after a restart the cache counts %d bytes, before %d", c.bytes, two)
	}
}

// countedBytes is what the cache counts against its bound.
func countedBytes(c *Cache) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

// An image's layers share one bound while they unpack, three at a time,
// each published as it finishes: bounded each alone, eight layers of a
// 900 MiB file of zeros (under 1 MB compressed each) put 7.35 GB on the
// disk under a bound of 1 GiB before the image was refused.
func TestLayersShareTheBoundWhileUnpacking(t *testing.T) {
	r := newTestRegistry(t)
	const bound = 1 << 20
	var layers []v1.Layer
	for i := range 6 {
		layers = append(layers, layerOf(t, compression.GZip, file(fmt.Sprint("zeros-", i), strings.Repeat("\x00", bound*9/10), 0o644)))
	}
	r.push(t, "zeros:1", imageOf(t, "linux/amd64", v1.Config{}, layers...))
	reg := prometheus.NewRegistry()
	c := newTestCache(t, t.TempDir(), r, func(o *Options) {
		o.MaxBytes = bound
		o.Metrics = reg
	})
	_, err := c.Rootfs(context.Background(), r.ref(t, "zeros:1"))
	if n := metricValue(t, reg, "paddock_images_layers_unpacked_total"); n > 1 {
		t.Fatalf("%v layers of %d bytes each were unpacked under a bound of %d bytes", n, bound*9/10, bound)
	}
	if err == nil || !strings.Contains(err.Error(), "unpack to more than the cache bound") {
		t.Fatalf("got %v, want the image refused while its layers unpack", err)
	}
	if b := countedBytes(c); b > bound {
		t.Fatalf("the cache counts %d bytes, over its bound of %d", b, bound)
	}
}

// sizedConfigImage is an image whose manifest gives its config the size
// configSize, whatever the config's bytes.
type sizedConfigImage struct {
	v1.Image
	configSize int64
}

func (i sizedConfigImage) Manifest() (*v1.Manifest, error) {
	m, err := i.Image.Manifest()
	if err != nil {
		return nil, err
	}
	m = m.DeepCopy()
	m.Config.Size = i.configSize
	return m, nil
}

func (i sizedConfigImage) RawManifest() ([]byte, error) {
	m, err := i.Manifest()
	if err != nil {
		return nil, err
	}
	return json.Marshal(m)
}

func (i sizedConfigImage) Digest() (v1.Hash, error) {
	b, err := i.RawManifest()
	if err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(bytes.NewReader(b))
	return h, err
}

// A manifest giving its config a size of -1 (go-containerregistry's
// "unknown", which reads the config whole, unbounded: a probe's 1 GiB
// config took the runner to 2.7 GB) or 0 is refused before the config is
// downloaded.
func TestRefusesConfigOfNoSize(t *testing.T) {
	r := newTestRegistry(t)
	base := imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file("a", "a", 0o644)))
	c := newTestCache(t, t.TempDir(), r, nil)
	for _, size := range []int64{-1, 0} {
		tag := fmt.Sprintf("cfg-size:%d", size+1)
		r.push(t, tag, sizedConfigImage{Image: base, configSize: size})
		_, err := c.Rootfs(context.Background(), r.ref(t, tag))
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("config of %d bytes", size)) {
			t.Fatalf("config size %d: got %v, want the config refused for its size", size, err)
		}
		m, _ := base.Manifest()
		if n := blobGetsOf(r, m.Config.Digest); n != 0 {
			t.Fatalf("config size %d: config downloaded %d times", size, n)
		}
	}
}

// lyingManifest is an image whose manifest is m.
type lyingManifest struct {
	v1.Image
	m *v1.Manifest
}

func (l lyingManifest) Manifest() (*v1.Manifest, error) { return l.m, nil }

// TestLayerSizesDoNotWrap: layers whose claimed sizes add up past what an
// int64 holds are larger than any bound, as one such layer is; summed,
// two of 2^62 bytes wrapped to a negative total and passed the check made
// before any download.
func TestLayerSizesDoNotWrap(t *testing.T) {
	huge := func(i byte) v1.Descriptor {
		return v1.Descriptor{Size: 1 << 62, Digest: v1.Hash{Algorithm: "sha256", Hex: strings.Repeat(string('a'+i), 64)}}
	}
	for n := 1; n <= 3; n++ {
		m := &v1.Manifest{Config: v1.Descriptor{Size: 100}}
		for i := range n {
			m.Layers = append(m.Layers, huge(byte(i)))
		}
		if err := checkManifest(lyingManifest{m: m}, 1<<30); err == nil || !strings.Contains(err.Error(), "larger than the cache bound") {
			t.Errorf("%d layers of 2^62 bytes: %v, want them larger than the cache bound", n, err)
		}
	}
}
