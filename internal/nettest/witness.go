// Package nettest has network helpers for tests.
package nettest

import (
	"net"
	"sync/atomic"
	"testing"
)

// Witness is a TCP listener on 127.0.0.1 that accepts every connection,
// counts it, writes its greeting and closes it: a test's way to see
// whether something reached an address it must not, and to check, as a
// control, that something allowed to does.
type Witness struct {
	Port     int
	accepted atomic.Int64
}

// NewWitness starts a witness that greets each connection with greeting
// (nothing if empty); it stops when the test ends.
func NewWitness(t testing.TB, greeting string) *Witness {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &Witness{Port: lis.Addr().(*net.TCPAddr).Port}
	AcceptEach(t, lis, func(conn net.Conn) {
		w.accepted.Add(1)
		if greeting != "" {
			_, _ = conn.Write([]byte(greeting)) // the peer may be gone; accepted counts the connection
		}
		conn.Close()
	})
	return w
}

// Accepted returns how many connections the witness has accepted.
func (w *Witness) Accepted() int64 { return w.accepted.Load() }
