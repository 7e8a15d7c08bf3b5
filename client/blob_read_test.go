package client_test

import (
	"crypto/rand"
	"runtime"
	"testing"

	"github.com/paddock-build/paddock/client"
	"github.com/paddock-build/paddock/internal/farmtest"
)

// peakHeapWriter discards what it is given and records the largest heap
// it saw while being written to.
type peakHeapWriter struct{ peak uint64 }

func (w *peakHeapWriter) Write(p []byte) (int, error) {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	w.peak = max(w.peak, m.HeapAlloc)
	return len(p), nil
}

// ReadTo streams: a 64 MiB blob passes through without the client ever
// holding it whole (an outside test had a 2 GiB blob cost 5 GB of RSS).
func TestReadToStreams(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := client.New(f.Conn, client.Options{})
	data := make([]byte, 64<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	b := client.NewBlob(data)
	if err := c.Write(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	data, b.Data = nil, nil
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	w := &peakHeapWriter{}
	if err := c.ReadTo(t.Context(), b.Digest, w); err != nil {
		t.Fatal(err)
	}
	// Half the blob: a read that holds it whole grows the heap by all of
	// it (166 MiB before), while a streamed one still holds what gRPC's
	// flow-control window lets the in-process server send ahead, which is
	// up to 16 MiB and grows when the reader is slow.
	if grew := int64(w.peak) - int64(before.HeapAlloc); grew > 32<<20 {
		t.Errorf("the heap grew by %d MiB while a 64 MiB blob was read; want it streamed", grew>>20)
	}
}
