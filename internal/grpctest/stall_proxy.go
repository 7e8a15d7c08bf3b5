package grpctest

import (
	"net"
	"sync"
	"testing"
)

// StallProxy forwards TCP connections to a server until Stall; then it
// forwards nothing more either way and closes nothing, which is what a
// client sees of a stopped process or a partition. Connections close when
// the test ends.
type StallProxy struct {
	Addr    string
	stalled chan struct{}
	once    sync.Once
}

// NewStallProxy listens on loopback and forwards to target.
func NewStallProxy(t testing.TB, target string) *StallProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &StallProxy{Addr: lis.Addr().String(), stalled: make(chan struct{})}
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		lis.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	go func() {
		for {
			client, err := lis.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", target)
			if err != nil {
				client.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, client, server)
			mu.Unlock()
			go p.pipe(server, client)
			go p.pipe(client, server)
		}
	}()
	return p
}

// Stall stops the forwarding, for good.
func (p *StallProxy) Stall() { p.once.Do(func() { close(p.stalled) }) }

// pipe copies src to dst until the stall (dropping what it read then) or
// an error.
func (p *StallProxy) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		select {
		case <-p.stalled:
			return
		default:
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
