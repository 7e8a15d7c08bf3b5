package worker_test

import (
	"io"
	"net"
	"sync"
	"testing"
)

// cutProxy forwards TCP connections to a server, as the network between
// a worker and its scheduler does, until cut: then it closes every
// connection it carries and closes new ones at once, until resumed.
type cutProxy struct {
	addr   string
	target string

	mu    sync.Mutex
	down  bool
	conns []net.Conn // both ends of every connection carried
}

// newCutProxy starts a proxy to target on a loopback port; it stops when
// the test ends.
func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: lis.Addr().String(), target: target}
	t.Cleanup(func() { lis.Close(); p.cut() })
	go p.serve(lis)
	return p
}

func (p *cutProxy) serve(lis net.Listener) {
	for {
		in, err := lis.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		if p.down { // checked with the append, so that cut misses none
			p.mu.Unlock()
			in.Close()
			out.Close()
			continue
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go pipe(out, in)
		go pipe(in, out)
	}
}

// pipe copies src to dst, then closes both.
func pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src) // ends with an error when cut closes the connections
	dst.Close()
	src.Close()
}

// cut drops every connection and refuses new ones until resume.
func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// resume lets new connections through again.
func (p *cutProxy) resume() {
	p.mu.Lock()
	p.down = false
	p.mu.Unlock()
}
