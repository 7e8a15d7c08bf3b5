package grpclimit

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestASteadySlowReaderIsNotStalled: a client that reads its replies
// steadily is not stalled while the kernel holds the bytes a write handed
// it (a write returns only once the kernel took all of it, and with a
// large send buffer the writer waits long after the client began
// reading): its acknowledged bytes count. Counted by writes alone, a
// client reading 3 to 6 KiB/s was closed within minutes (outside probe).
// Once it stops reading, it is stalled.
func TestASteadySlowReaderIsNotStalled(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	client, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	c := &sendConn{Conn: server, lastProgress: time.Now(), receiving: map[*sendRPC]time.Time{}}
	defer func() { _ = c.Close() }()
	// More than the client reads below, so that the write never returns:
	// only what the client acknowledged shows its progress.
	const reply = 32 << 20
	c.add(reply) // queued, as gRPC's reply is
	go func() { _, _ = c.Write(make([]byte, reply)) }()
	// A stall timeout of 2 s: the client below takes 64 KiB (two reads)
	// in 40 ms, so only a machine stalled for seconds could miss it.
	l := &ConnLimits{StallTimeout: 2 * time.Second, RequestTimeout: time.Hour}

	buf := make([]byte, 32<<10)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if _, err := io.ReadFull(client, buf); err != nil { // about 1.5 MB/s
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond) // the client's pace: what is tested, not a wait for state
		if c.stalled(l) {
			t.Fatalf("a client reading steadily is stalled (%d of %d bytes written)", c.written, reply)
		}
	}
	// The client stops reading: its unread bytes stay queued.
	for deadline := time.Now().Add(20 * time.Second); !c.stalled(l); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a client that stopped reading is not stalled after 20 s")
		}
	}
}
