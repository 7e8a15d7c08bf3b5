package storage

import (
	"bytes"
	"io"
	"slices"
	"testing"
)

// sentChunks runs a read of data through a chunkSender expecting expected
// bytes, the way Read does (io.Copy, then flush), and returns the messages.
func sentChunks(t *testing.T, data []byte, expected int64) [][]byte {
	t.Helper()
	var msgs [][]byte
	c := newChunkSender(expected, func(int64) error { return nil }, func(b []byte) error {
		msgs = append(msgs, bytes.Clone(b))
		return nil
	})
	defer c.release()
	// A reader without WriteTo, like a file's, so io.Copy uses ReadFrom.
	if _, err := io.Copy(c, struct{ io.Reader }{bytes.NewReader(data)}); err != nil {
		t.Fatal(err)
	}
	if err := c.flush(); err != nil {
		t.Fatal(err)
	}
	return msgs
}

func TestChunkSenderMessages(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (5*streamChunkBytes/2)/16)
	for _, tc := range []struct {
		name     string
		data     []byte
		expected int64
		sizes    []int
	}{
		{"empty", nil, 0, nil},
		{"small blob, one message", []byte("hello"), 5, []int{5}},
		{"exactly one chunk", big[:streamChunkBytes], streamChunkBytes, []int{streamChunkBytes}},
		{"two and a half chunks", big, int64(len(big)), []int{streamChunkBytes, streamChunkBytes, len(big) - 2*streamChunkBytes}},
		{"more than expected still arrives whole", big[:3000], 100, []int{100 + chunkSlackBytes, chunkSlackBytes, chunkSlackBytes, chunkSlackBytes, chunkSlackBytes, 3000 - 100 - 5*chunkSlackBytes}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := sentChunks(t, tc.data, tc.expected)
			var sizes []int
			for _, m := range msgs {
				sizes = append(sizes, len(m))
			}
			if !slices.Equal(sizes, tc.sizes) {
				t.Fatalf("message sizes %v, want %v", sizes, tc.sizes)
			}
			if got := bytes.Join(msgs, nil); !bytes.Equal(got, tc.data) {
				t.Fatalf("the messages do not add up to the data (%d bytes, want %d)", len(got), len(tc.data))
			}
		})
	}
}

// TestChunkSenderBufferSize: a small read's buffer is about its own size,
// not a full chunk (it was a full chunk, and under a Bazel build those
// buffers were most of the farm's garbage); a large read's is a chunk.
func TestChunkSenderBufferSize(t *testing.T) {
	for _, tc := range []struct {
		expected int64
		want     int
	}{
		{0, chunkSlackBytes},
		{300, 300 + chunkSlackBytes},
		{streamChunkBytes - 1, streamChunkBytes},
		{streamChunkBytes, streamChunkBytes},
		{10 * streamChunkBytes, streamChunkBytes},
		{-1, chunkSlackBytes}, // never expected; a bad size still gets a buffer
	} {
		c := newChunkSender(tc.expected, func(int64) error { return nil }, func([]byte) error { return nil })
		if _, err := c.Write([]byte{1}); err != nil { // buffers are taken for bytes to send
			t.Fatal(err)
		}
		if got := cap(c.buf); got != tc.want {
			t.Errorf("a read of %d bytes has a buffer of %d bytes, want %d", tc.expected, got, tc.want)
		}
		c.release()
	}
}

// TestChunkSenderWaitsBeforeItTakesABuffer: a sender waits for room in
// the send backlog with no buffer held (but the few bytes of one past
// what it expected), and has room reserved for each message's bytes
// before it sends it, by the ReadFrom of an identity read and the Writes
// of a compressed one alike. Before, it filled its next 1 MiB buffer and
// then waited to send it: a slow client kept that buffer held, uncounted.
func TestChunkSenderWaitsBeforeItTakesABuffer(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), (5*streamChunkBytes/2)/16)
	for _, tc := range []struct {
		name     string
		data     []byte
		expected int64
		writes   bool // Write in pieces, as the zstd encoder does
	}{
		{"two and a half chunks", big, int64(len(big)), false},
		{"two whole chunks", big[:2*streamChunkBytes], 2 * streamChunkBytes, false},
		{"small", big[:300], 300, false},
		{"compressed, in pieces", big, int64(len(big)), true},
		{"more than expected, in pieces", big[:3000], 100, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c *chunkSender
			var reserved, sent int64
			c = newChunkSender(tc.expected, func(n int64) error {
				if c.buf != nil && cap(c.buf) > chunkSlackBytes {
					t.Errorf("waited for room for %d bytes holding a buffer of %d", n, cap(c.buf))
				}
				reserved += n
				return nil
			}, func(b []byte) error {
				if reserved < int64(len(b)) {
					t.Errorf("sent %d bytes with room reserved for %d", len(b), reserved)
				}
				reserved, sent = 0, sent+int64(len(b)) // gRPC counts what it took
				return nil
			})
			defer c.release()
			if tc.writes {
				for p := tc.data; len(p) > 0; p = p[min(len(p), 1000):] {
					if _, err := c.Write(p[:min(len(p), 1000)]); err != nil {
						t.Fatal(err)
					}
				}
			} else if _, err := io.Copy(c, struct{ io.Reader }{bytes.NewReader(tc.data)}); err != nil {
				t.Fatal(err)
			}
			if err := c.flush(); err != nil {
				t.Fatal(err)
			}
			if sent != int64(len(tc.data)) {
				t.Fatalf("sent %d bytes of %d", sent, len(tc.data))
			}
		})
	}
}
