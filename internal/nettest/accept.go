package nettest

import (
	"net"
	"testing"
	"time"
)

// AcceptEach accepts every connection to lis until the test ends, and
// closes lis then (t.Cleanup). handle runs in the accepting goroutine, one
// connection at a time, and owns the connection: it must close it. Tests
// that stand in for a peer (one that refuses, greets, counts or only
// handshakes) each wrote this loop again; here it is once.
func AcceptEach(t testing.TB, lis net.Listener, handle func(net.Conn)) {
	t.Helper()
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
}

// Refuser listens on network and address and closes every connection at
// once, as a port or socket that nothing serves would refuse it, sending
// the time of each on the returned channel (buffered for 100): tests of a
// dialer's backoff count its attempts and their spacing. It returns the
// listener's address; the listener closes when the test ends.
func Refuser(t testing.TB, network, address string) (string, <-chan time.Time) {
	t.Helper()
	lis, err := net.Listen(network, address)
	if err != nil {
		t.Fatal(err)
	}
	times := make(chan time.Time, 100)
	AcceptEach(t, lis, func(c net.Conn) {
		times <- time.Now()
		c.Close()
	})
	return lis.Addr().String(), times
}
