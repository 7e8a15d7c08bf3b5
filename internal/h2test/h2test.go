// Package h2test is a bare HTTP/2 client for tests that must behave as no
// gRPC library lets a client behave: announce a receive window of 0, send
// part of a message and stop, or ping at a chosen pace. It speaks just
// enough HTTP/2 to start gRPC calls on a real server.
package h2test

import (
	"bytes"
	"encoding/binary"
	"net"
	"sync"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"
)

// Conn is one HTTP/2 connection to a gRPC server at Addr. Its writes are
// safe from several goroutines.
type Conn struct {
	Addr string
	net  net.Conn
	fr   *http2.Framer
	mu   sync.Mutex // writes
	next uint32     // the next stream's ID
}

// Dial connects to addr, sends the client preface and a SETTINGS frame
// with settings, and closes the connection when the test ends.
func Dial(t testing.TB, addr string, settings ...http2.Setting) *Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &Conn{Addr: addr, net: nc, fr: http2.NewFramer(nc, nc), next: 1}
	if _, err := nc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return c
}

// Close closes the connection.
func (c *Conn) Close() error { return c.net.Close() }

// Message is m in gRPC's framing (not compressed, its length), with its
// length announced as announced when that is not zero: a caller sending
// fewer bytes than announced leaves the message unfinished.
func Message(m proto.Message, announced int) []byte {
	b, _ := proto.Marshal(m)
	if announced == 0 {
		announced = len(b)
	}
	msg := make([]byte, 5+len(b))
	binary.BigEndian.PutUint32(msg[1:5], uint32(announced))
	copy(msg[5:], b)
	return msg
}

// Call starts a call of method (a gRPC path such as
// "/grpc.health.v1.Health/Check") and sends data on it, ending the
// client's side when end is set. data must fit the server's flow-control
// windows (64 KiB at first). It returns the stream's ID.
func (c *Conn) Call(t testing.TB, method string, data []byte, end bool) uint32 {
	t.Helper()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", c.Addr}, {":path", method},
		{"content-type", "application/grpc"}, {"te", "trailers"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}) // into a bytes.Buffer: cannot fail
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.next
	c.next += 2
	if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hb.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := c.fr.WriteData(id, end, data); err != nil {
		t.Fatal(err)
	}
	return id
}

// Data sends data on the stream id, ending the client's side when end is
// set.
func (c *Conn) Data(t testing.TB, id uint32, data []byte, end bool) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.fr.WriteData(id, end, data); err != nil {
		t.Fatal(err)
	}
}

// WindowUpdate lets n more bytes of stream id through (the connection's
// window when id is 0), as a client reading them would; safe beside
// Serve.
func (c *Conn) WindowUpdate(id, n uint32) {
	c.write(func() error { return c.fr.WriteWindowUpdate(id, n) })
}

// Ping sends a PING carrying n and reads frames until its ack (true) or a
// GOAWAY (false, with the GOAWAY's debug data); for a test that reads
// nothing else meanwhile (not with Serve).
func (c *Conn) Ping(n byte) (bool, string) {
	c.mu.Lock()
	err := c.fr.WritePing(false, [8]byte{n})
	c.mu.Unlock()
	if err != nil {
		return false, err.Error()
	}
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return false, err.Error()
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if f.IsAck() && f.Data[0] == n {
				return true, ""
			}
		case *http2.GoAwayFrame:
			return false, string(f.DebugData())
		}
	}
}

// Serve reads frames in the background, answering SETTINGS and PINGs and
// reading nothing else, so that the server's responses stay where the
// client's windows keep them. The channel is closed once the server has
// closed the connection.
func (c *Conn) Serve() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := c.fr.ReadFrame()
			if err != nil {
				return
			}
			c.answer(f)
		}
	}()
	return done
}

// answer acknowledges f if it is a SETTINGS or PING frame of the server's.
func (c *Conn) answer(f http2.Frame) {
	switch f := f.(type) {
	case *http2.SettingsFrame:
		if !f.IsAck() {
			c.write(func() error { return c.fr.WriteSettingsAck() })
		}
	case *http2.PingFrame:
		if !f.IsAck() {
			c.write(func() error { return c.fr.WritePing(true, f.Data) })
		}
	}
}

func (c *Conn) write(f func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	_ = f() // a dead connection shows in what the test reads next
}

// Ended reads frames until the server ends stream id (a HEADERS or DATA
// frame ending it, or RST_STREAM), answering SETTINGS and PINGs: true;
// false if the connection ends first. For a test that reads nothing else
// meanwhile (not with Serve or Ping).
func (c *Conn) Ended(id uint32) bool {
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return false
		}
		c.answer(f)
		switch f := f.(type) {
		case *http2.HeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				return true
			}
		case *http2.DataFrame:
			if f.StreamID == id && f.StreamEnded() {
				return true
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return true
			}
		}
	}
}
