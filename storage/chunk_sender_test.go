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
	c := newChunkSender(expected, func(b []byte) error {
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
		{"more than expected still arrives whole", big[:3000], 100, []int{100 + chunkSlackBytes, 100 + chunkSlackBytes, 100 + chunkSlackBytes, 100 + chunkSlackBytes, 3000 - 4*(100+chunkSlackBytes)}},
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
		c := newChunkSender(tc.expected, func([]byte) error { return nil })
		if got := cap(c.buf); got != tc.want {
			t.Errorf("a read of %d bytes has a buffer of %d bytes, want %d", tc.expected, got, tc.want)
		}
		c.release()
	}
}
