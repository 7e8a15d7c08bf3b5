package storage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/bits"

	"github.com/klauspost/compress/zstd"
)

// CodecMemoryBytes is the process's budget for the zstd encoders and
// decoders of compressed ByteStream calls (`compressed-blobs/zstd/`).
// Each holds a window of history, and a decoder holds the window its
// client's frame declares, whatever the blob's size: without a bound, 40
// uploads of about 1 KB each, declaring 64 MiB windows and kept open,
// took `paddock up` to 1.3 GB, and 500 compressed reads left unread to
// 2.3 GB. Calls wait for their share in turn, a tenant for at most half
// (memoryBudget). It is apart from RequestMemoryBytes so that slow
// transfers never hold up the Action and Command reads of Execute.
const CodecMemoryBytes = 256 << 20

var codecMemory = newMemoryBudget(CodecMemoryBytes)

const (
	// maxReadWindow is the largest window a compressed read encodes
	// with: a wider one compresses build outputs no better (0.509 of the
	// 37 MB paddock binary at 1 MiB, as at 8 MiB) and costs its size.
	maxReadWindow = 1 << 20
	// maxUploadWindow is the largest window an upload may declare, as
	// before this budget: zstd's own levels up to 19 use at most 8 MiB.
	maxUploadWindow = 64 << 20
	// sizedUploadWindow bounds the window a later frame of an upload may
	// declare when its first frame declared less: encoders declare at
	// most 8 MiB (zstd up to level 19, klauspost's default), so a
	// client's later frames fit.
	sizedUploadWindow = 8 << 20
)

// windowFor is the power of two at or above size, within [lo, hi].
func windowFor(size int64, lo, hi int) int {
	if size <= int64(lo) {
		return lo
	}
	if size >= int64(hi) {
		return hi
	}
	return 1 << bits.Len64(uint64(size-1))
}

// encoderMemory is what an encoder with window costs (klauspost's
// fastest level with lower memory: measured 443 KiB for a 1 KiB window,
// 794 KiB for 128 KiB, 1,648 KiB for 1 MiB, io.Copy's buffer included).
func encoderMemory(window int) int64 { return int64(window) + 768<<10 }

// decoderMemory is what a decoder of frames declaring window costs (a
// ring of the window and two blocks, and the block decoder's buffers:
// measured 27 KiB for a 2 KiB window, 471 KiB for 100 KB, 8,882 KiB for
// 8 MiB).
func decoderMemory(window uint64) int64 {
	return int64(window) + 4*int64(min(window, 128<<10)) + 256<<10
}

// newReadEncoder returns a zstd encoder into w for a read of size bytes,
// its window fitted to them, once codecMemory has room for it; call
// release when the encoder is closed.
func newReadEncoder(ctx context.Context, w io.Writer, size int64) (enc *zstd.Encoder, release func(), err error) {
	window := windowFor(size, zstd.MinWindowSize, maxReadWindow)
	release, err = codecMemory.holdBytes(ctx, encoderMemory(window))
	if err != nil {
		return nil, nil, err
	}
	enc, err = zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(window), zstd.WithLowerEncoderMem(true))
	if err != nil {
		release()
		return nil, nil, err
	}
	return enc, release, nil
}

// newUploadDecoder reads the first frame header of the compressed bytes
// of r, an upload of a blob of size bytes, waits until codecMemory has
// room for a decoder of the window that frame declares (or of the one
// size calls for, if larger), and returns a decoder of r that refuses
// any frame declaring more than that. Call release once the decoder is
// closed.
func newUploadDecoder(ctx context.Context, r io.Reader, size int64) (dec *zstd.Decoder, release func(), err error) {
	head := make([]byte, zstd.HeaderMaxSize)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	head = head[:n]
	window := uploadWindow(head, size)
	release, err = codecMemory.holdBytes(ctx, decoderMemory(window))
	if err != nil {
		return nil, nil, err
	}
	dec, err = zstd.NewReader(io.MultiReader(bytes.NewReader(head), r), zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderMaxMemory(maxUploadWindow), zstd.WithDecoderMaxWindow(window))
	if err != nil {
		release()
		return nil, nil, err
	}
	return dec, release, nil
}

// uploadWindow is the window a decoder of an upload is held to: the one
// its first frame declares (a single-segment frame's content size), or
// the one a blob of size bytes may need from an encoder that declares
// the most, whichever is larger, at most maxUploadWindow (a frame
// declaring more is refused). Bytes that are no frame header get the
// latter; the decoder refuses them.
func uploadWindow(head []byte, size int64) uint64 {
	sized := uint64(windowFor(size, zstd.MinWindowSize, sizedUploadWindow))
	var h zstd.Header
	if h.Decode(head) != nil || h.Skippable {
		return sized
	}
	declared := h.WindowSize
	if h.SingleSegment {
		declared = max(h.FrameContentSize, zstd.MinWindowSize)
	}
	return min(max(declared, sized), maxUploadWindow)
}
