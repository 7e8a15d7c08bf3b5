package storage

import (
	"context"
	"io"
	"testing"
)

// readSizes is a reader of n bytes that records the largest buffer it
// was asked to fill.
type readSizes struct {
	n, largest int
}

func (r *readSizes) Read(p []byte) (int, error) {
	r.largest = max(r.largest, len(p))
	if r.n == 0 {
		return 0, io.EOF
	}
	m := min(len(p), r.n)
	r.n -= m
	return m, nil
}

// TestCopyBufferIsSmall: the buffer a Put copies through is at most
// 32 KiB, and no larger than the blob: an upload holds it for its whole
// life, and one tenant's 2,400 half-done uploads held 595 MB of 256 KiB
// buffers.
func TestCopyBufferIsSmall(t *testing.T) {
	for _, size := range []int{10, 1 << 20} {
		src := &readSizes{n: size}
		n, err := copyContext(context.Background(), io.Discard, src, int64(size)+1)
		if err != nil || n != int64(size) {
			t.Fatalf("copied %d of %d: %v", n, size, err)
		}
		if want := min(32<<10, size+1); src.largest > want {
			t.Errorf("a %d-byte copy read into a %d-byte buffer, want at most %d", size, src.largest, want)
		}
	}
}

// TestOpenStreamsAreBoundedByMemory: the ByteStream slots are a quarter
// of the open files, and no more than an eighth of the memory holds at
// 64 KiB a stream: with a million open files, one tenant's half of the
// quarter held several gigabytes in half-done uploads.
func TestOpenStreamsAreBoundedByMemory(t *testing.T) {
	for _, c := range []struct {
		fdShare int
		memory  uint64
		want    int
	}{
		{262144, 24 << 30, 24 << 30 / 8 / (64 << 10)}, // 49,152
		{5000, 24 << 30, 5000},
		{262144, 0, 262144}, // memory unknown
		{262144, 1 << 20, 64},
	} {
		if got := maxOpenStreamsFor(c.fdShare, c.memory); got != c.want {
			t.Errorf("maxOpenStreamsFor(%d, %d) = %d, want %d", c.fdShare, c.memory, got, c.want)
		}
	}
}
