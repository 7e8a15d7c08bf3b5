package storage

import (
	"io"
	"sync"
)

// chunkSender batches a read's bytes into messages of at most
// streamChunkBytes. Its buffer is sized to what the read is expected to
// send, so the many small blobs a build reads (an output of a few hundred
// bytes, a stderr) do not each allocate a full chunk: under a Bazel build
// those 1 MiB buffers were most of the farm's allocation and so most of its
// garbage collection. Full-size buffers come from a pool.
type chunkSender struct {
	send func([]byte) error
	buf  []byte
	// pooled is the pool's handle on buf, returned by release.
	pooled *[]byte
}

// chunkSlackBytes is the room a small read's buffer has beyond its
// expected size.
const chunkSlackBytes = 512

// fullChunks holds streamChunkBytes buffers for reads of a chunk or more.
var fullChunks = sync.Pool{New: func() any {
	b := make([]byte, 0, streamChunkBytes)
	return &b
}}

// newChunkSender returns a sender for a read of about expected bytes (the
// blob's size less the offset; a compressed stream is usually smaller, and
// anything larger just takes more messages).
func newChunkSender(expected int64, send func([]byte) error) *chunkSender {
	c := &chunkSender{send: send}
	if expected >= streamChunkBytes {
		c.pooled = fullChunks.Get().(*[]byte)
		c.buf = (*c.pooled)[:0]
	} else {
		// Room beyond what is expected, so that ReadFrom sees the end of
		// a blob of exactly that size in the same buffer, and a small
		// compressed stream (a zstd frame is larger than an incompressible
		// blob) still fits one message.
		c.buf = make([]byte, 0, min(max(expected, 0)+chunkSlackBytes, streamChunkBytes))
	}
	return c
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		m := min(len(p), cap(c.buf)-len(c.buf))
		c.buf = append(c.buf, p[:m]...)
		p = p[m:]
		if len(c.buf) == cap(c.buf) {
			if err := c.flush(); err != nil {
				return 0, err
			}
		}
	}
	return n, nil
}

// ReadFrom reads straight into the chunk buffer, so io.Copy needs no buffer
// of its own.
func (c *chunkSender) ReadFrom(r io.Reader) (int64, error) {
	var total int64
	for {
		n, err := r.Read(c.buf[len(c.buf):cap(c.buf)])
		c.buf = c.buf[:len(c.buf)+n]
		total += int64(n)
		if len(c.buf) == cap(c.buf) {
			if ferr := c.flush(); ferr != nil {
				return total, ferr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// flush sends what is buffered, if anything. The message is marshalled
// before Send returns, so the buffer is reused at once.
func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = c.buf[:0]
	return err
}

// release returns a pooled buffer; the sender must not be used after.
func (c *chunkSender) release() {
	if c.pooled != nil {
		*c.pooled = c.buf[:0]
		fullChunks.Put(c.pooled)
		c.pooled, c.buf = nil, nil
	}
}
