package nettest

import (
	"net"
	"testing"
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
