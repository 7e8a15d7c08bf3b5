package images

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// maxZstdWindow bounds the window a zstd layer may ask its decoder for.
// go-containerregistry decodes with the library's defaults, which accept
// windows up to 512 MiB, and a decoder holds its whole window: a probe's
// image of three zstd layers, each a tiny tar and then 600 MiB of zeros
// with a 512 MiB window (2.4 MB in all), took the runner to 1.6 GB per
// pull, outside every sandbox's cgroup. zstd's own tools write windows of
// at most 8 MiB unless asked for "long" mode (128 MiB at --long=27);
// 64 MiB leaves room for that at its default.
const maxZstdWindow = 64 << 20

// ErrZstdWindow is the error of a layer whose zstd frames need a larger
// window than maxZstdWindow. Its text is the runner's own, safe to pass to
// a client (unlike a LayerReadError's).
var ErrZstdWindow = fmt.Errorf("is compressed with a zstd window over %d MiB, more than the runner decodes (compress it with zstd's default window, or --long=26 or less)", maxZstdWindow>>20)

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// uncompressedLayer opens l's tar stream. A layer pulled from a registry
// (remote) is decompressed here, by its first bytes as
// go-containerregistry does (whatever its media type says), with
// maxZstdWindow; a loaded one as go-containerregistry opens it (a
// tarball's uncompressed layer would be compressed first to be read as
// Compressed).
func uncompressedLayer(l v1.Layer, remote bool) (io.ReadCloser, error) {
	if !remote {
		return l.Uncompressed()
	}
	compressed, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(compressed, 64<<10)
	magic, _ := br.Peek(len(zstdMagic)) // a short stream is read as is, and fails as a tar
	switch {
	case bytes.HasPrefix(magic, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			compressed.Close()
			return nil, err
		}
		return decompressed{Reader: zr, close: func() { _ = zr.Close() }, compressed: compressed}, nil // a gzip reader has nothing to report on close
	case bytes.HasPrefix(magic, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderMaxWindow(maxZstdWindow), zstd.WithDecoderConcurrency(1))
		if err != nil {
			compressed.Close()
			return nil, err
		}
		return decompressed{Reader: windowChecked{zr}, close: zr.Close, compressed: compressed}, nil
	}
	return decompressed{Reader: br, close: func() {}, compressed: compressed}, nil
}

// decompressed is a decompressor over a layer's compressed stream; Close
// closes both.
type decompressed struct {
	io.Reader
	close      func()
	compressed io.Closer
}

func (d decompressed) Close() error {
	d.close()
	return d.compressed.Close()
}

// windowChecked turns the zstd decoder's refusal of a frame's window into
// ErrZstdWindow.
type windowChecked struct{ r io.Reader }

func (w windowChecked) Read(p []byte) (int, error) {
	n, err := w.r.Read(p)
	if errors.Is(err, zstd.ErrWindowSizeExceeded) {
		err = fmt.Errorf("layer %w", ErrZstdWindow)
	}
	return n, err
}
