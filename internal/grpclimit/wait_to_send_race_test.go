package grpclimit

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Handlers that ask for room at once are admitted one after another: each
// checked the backlog and then reserved, so two that checked before
// either reserved both got in, past the connection's bound. A storage
// test saw six 3 MiB replies admitted on one stalled connection where its
// 16 MiB hold five (about one run in a hundred under -race).
func TestWaitToSendAdmitsWithinTheBoundUnderContention(t *testing.T) {
	defer SetConnLimits(ConnLimits{MaxConnBacklog: 16 << 20, MaxBacklog: 1 << 40, StallTimeout: time.Hour, RequestTimeout: time.Hour})()
	for round := range 20 {
		a, b := net.Pipe()
		c := &sendConn{Conn: a, lastProgress: time.Now(), receiving: map[*sendRPC]time.Time{}}
		var admitted atomic.Int32
		var wg sync.WaitGroup
		start := make(chan struct{})
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		for range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rctx := context.WithValue(ctx, sendRPCKey{}, &sendRPC{conn: c})
				<-start
				if WaitToSend(rctx, 3<<20) == nil {
					admitted.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		cancel()
		if n := admitted.Load(); n != 5 {
			t.Fatalf("round %d: %d replies of 3 MiB admitted on one connection, want the 5 its 16 MiB hold", round, n)
		}
		_ = c.Close() // its reservations leave the process's backlog; a pipe closes without error
		_ = b.Close()
	}
}
