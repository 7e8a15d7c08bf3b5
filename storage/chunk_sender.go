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
//
// A buffer is held only from a wait for room in the send backlog for all
// of it (wait: grpclimit.WaitToSend) to the send that hands its bytes to
// gRPC; it goes back between chunks. So every buffer held is counted in
// the backlog, which bounds how much the responses queued for clients
// take (MaxConnBacklog for a connection, MaxBacklog for the process), and
// a reader a slow client keeps waiting for room holds none: the buffer is
// taken after the wait, not before. Before, the next chunk was read into
// the buffer and then waited to be sent, and each slow reader held 1 MiB
// that no bound counted: thousands of them held gigabytes. (While gRPC
// takes the message, its copy and the buffer are both counted by the one
// reservation: what the readers hold is at most twice the backlog.)
//
// Bytes past what the read was expected to send (a zstd stream a little
// longer than an incompressible blob; the read of an end of file after the
// last full chunk) go into a small buffer, not waited for when it is
// taken: what it holds beyond its reservation is waited for before it is
// sent. That is at most chunkSlackBytes held uncounted, as little as the
// rest of a call's own state.
type chunkSender struct {
	wait func(n int64) error // room in the send backlog for n bytes
	send func([]byte) error
	// size is the capacity of the buffers taken while the expected bytes
	// last; pooled says they come from fullChunks.
	size   int
	pooled bool
	left   int64 // bytes expected that are not yet sent
	// buf is the chunk being filled, nil between chunks; reserved is the
	// room wait reserved for it.
	buf      []byte
	reserved int64
	// handle is the pool's handle on buf, when it is pooled.
	handle *[]byte
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
// anything larger just takes more messages) that waits for room to send a
// buffer's bytes (wait) before it fills the buffer, and sends them with
// send.
func newChunkSender(expected int64, wait func(n int64) error, send func([]byte) error) *chunkSender {
	c := &chunkSender{wait: wait, send: send, left: expected, size: streamChunkBytes, pooled: expected >= streamChunkBytes}
	if !c.pooled {
		// Room beyond what is expected, so that ReadFrom sees the end of
		// a blob of exactly that size in the same buffer, and a small
		// compressed stream (a zstd frame is larger than an incompressible
		// blob) still fits one message.
		c.size = int(min(max(expected, 0)+chunkSlackBytes, streamChunkBytes))
	}
	return c
}

// take gets the next chunk's buffer, after room for it in the send
// backlog, if there is none yet.
func (c *chunkSender) take() error {
	if c.buf != nil {
		return nil
	}
	if c.left <= 0 { // past what was expected: a few bytes, or none
		c.buf, c.reserved = make([]byte, 0, chunkSlackBytes), 0
		return nil
	}
	if err := c.wait(int64(c.size)); err != nil {
		return err
	}
	c.reserved = int64(c.size)
	if c.pooled {
		c.handle = fullChunks.Get().(*[]byte)
		c.buf = (*c.handle)[:0]
	} else {
		c.buf = make([]byte, 0, c.size)
	}
	return nil
}

// giveBack ends the buffer's hold: a pooled one goes back to the pool.
func (c *chunkSender) giveBack() {
	if c.handle != nil {
		*c.handle = c.buf[:0]
		fullChunks.Put(c.handle)
		c.handle = nil
	}
	c.buf, c.reserved = nil, 0
}

func (c *chunkSender) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		if err := c.take(); err != nil {
			return 0, err
		}
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
		if err := c.take(); err != nil {
			return total, err
		}
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

// flush sends what is buffered, if anything, and gives the buffer back.
// The message is marshalled before Send returns, so the buffer is free
// once it does.
func (c *chunkSender) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	if more := int64(len(c.buf)) - c.reserved; more > 0 {
		if err := c.wait(more); err != nil {
			return err
		}
	}
	err := c.send(c.buf)
	c.left -= int64(len(c.buf))
	c.giveBack()
	return err
}

// release gives back a buffer still held; the sender must not be used
// after.
func (c *chunkSender) release() { c.giveBack() }
