package images

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/zstd"

	"github.com/paddock-build/paddock/images/imagetest"
)

// zstdLayerWithWindow is a zstd layer of entries whose frame declares a
// window of 1<<windowLog bytes.
func zstdLayerWithWindow(t *testing.T, windowLog int, entries ...imagetest.Entry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	zw, err := zstd.NewWriter(&buf, zstd.WithSingleSegment(false), zstd.WithWindowSize(1<<20))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(tarBytes(t, entries...)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if b[4]&0x20 != 0 {
		t.Fatal("the frame is single-segment: it has no window descriptor to set")
	}
	b[5] = byte(windowLog-10) << 3 // Window_Descriptor: exponent, mantissa 0
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// A zstd layer may ask for a window up to maxZstdWindow: the decoder
// holds its window, and go-containerregistry's allowed 512 MiB, so that
// three layers of a tiny tar and 600 MiB of zeros (2.4 MB pulled) took
// the runner to 1.6 GB for one pull, outside every sandbox's cgroup.
func TestZstdLayersAreBoundedInWindow(t *testing.T) {
	r := newTestRegistry(t)
	c := newTestCache(t, t.TempDir(), r, nil)
	for _, tc := range []struct {
		windowLog int
		ok        bool
	}{{26, true}, {27, false}, {29, false}} {
		tag := "zstd-window:" + string(rune('a'+tc.windowLog-26))
		r.push(t, tag, imageOf(t, "linux/amd64", v1.Config{}, zstdLayerWithWindow(t, tc.windowLog, file("f", tag, 0o644))))
		_, err := c.Rootfs(context.Background(), r.ref(t, tag))
		if tc.ok && err != nil {
			t.Fatalf("a layer of a 2^%d-byte window: %v", tc.windowLog, err)
		}
		if !tc.ok && !errors.Is(err, ErrZstdWindow) {
			t.Fatalf("a layer of a 2^%d-byte window: %v, want it refused for its window", tc.windowLog, err)
		}
	}
}
