package grpclimit

import (
	"net"
	"sync"
	"testing"
	"time"
)

// addrConn is a connection with addresses of its own (the backlog's key)
// and nothing behind it.
type addrConn struct {
	net.Conn
	local, remote net.Addr
}

func (c addrConn) LocalAddr() net.Addr  { return c.local }
func (c addrConn) RemoteAddr() net.Addr { return c.remote }
func (c addrConn) Close() error         { return nil }

// TestClosingWhileReapingDoesNotDeadlock: connections close while the
// reaper looks at every connection. Close held its connection's lock
// while it waited for the backlog's, which the reaper held while it waited
// for that connection's lock: both waited forever, and with them every
// Accept and Close of every listener (an unauthenticated client resetting
// 2,000 connections at a time froze the farm).
func TestClosingWhileReapingDoesNotDeadlock(t *testing.T) {
	TrackSends(nil) // starts the backlog
	l := DefaultConnLimits()
	stop := make(chan struct{})
	reaped := make(chan struct{})
	go func() {
		defer close(reaped)
		for {
			select {
			case <-stop:
				return
			default:
				reapOnce(&l)
			}
		}
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 3000 {
					c := &sendConn{Conn: addrConn{
						local:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1},
						remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 10000 + g*3000 + i},
					}, lastProgress: time.Now(), receiving: map[*sendRPC]time.Time{}}
					backlog.mu.Lock()
					backlog.conns[connKeyOf(c.LocalAddr(), c.RemoteAddr())] = c
					backlog.mu.Unlock()
					if i%2 == 1 {
						_ = c.Close() // addrConn's Close cannot fail; the test is about not deadlocking
					}
				}
			}()
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second): // the work takes milliseconds
		t.Fatal("closing connections while the reaper runs deadlocked")
	}
	close(stop)
	<-reaped
	backlog.mu.Lock() // leave no fake connection to other tests
	for k, c := range backlog.conns {
		if _, ok := c.Conn.(addrConn); ok {
			delete(backlog.conns, k)
		}
	}
	backlog.mu.Unlock()
}
