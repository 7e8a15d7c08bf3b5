package storage

import (
	"sync"

	"github.com/klauspost/compress/zstd"
)

// zstd encoders and decoders are expensive to build and safe to reuse for
// whole-buffer calls (EncodeAll/DecodeAll), so the batch RPCs share these.
// Streaming (ByteStream) builds its own per stream.
var (
	zstdOnce    sync.Once
	zstdEncoder *zstd.Encoder
	zstdDecoder *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		zstdEncoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
		zstdDecoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<30))
	})
	return zstdEncoder, zstdDecoder
}
