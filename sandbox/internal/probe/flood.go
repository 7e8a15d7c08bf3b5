package main

import (
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/paddock-build/paddock/sandbox/internal/probe/report"
)

// tcpFlood opens conns loopback TCP connections and writes up to mib MiB
// in all into them without ever reading the other end, then reports what
// the writes accepted and the host's TCP memory while the sockets are
// still held. A write that makes no progress for a while (the buffers
// are full or their charge is refused) ends that connection's writing.
func tcpFlood(conns, mib int) report.Flood {
	var r report.Flood
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		r.FirstWriteErr = "listen: " + err.Error()
		return r
	}
	var held []net.Conn
	for i := 0; i < conns; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			r.FirstWriteErr = "dial: " + err.Error()
			break
		}
		s, err := ln.Accept()
		if err != nil {
			r.FirstWriteErr = "accept: " + err.Error()
			break
		}
		held = append(held, c, s)
	}
	r.Conns = len(held) / 2
	per := int64(mib) << 20 / int64(max(r.Conns, 1))
	var queued atomic.Int64
	var firstErr sync.Once
	var wg sync.WaitGroup
	chunk := make([]byte, 64<<10)
	for i := 0; i < len(held); i += 2 {
		wg.Add(1)
		go func(c net.Conn) {
			defer wg.Done()
			for sent := int64(0); sent < per; {
				// The stall timeout only ends the attempt; what is checked
				// is how much was accepted, not how long it took.
				_ = c.SetWriteDeadline(time.Now().Add(time.Second))
				n, err := c.Write(chunk[:min(int64(len(chunk)), per-sent)])
				sent += int64(n)
				queued.Add(int64(n))
				if err != nil {
					firstErr.Do(func() { r.FirstWriteErr = err.Error() })
					return
				}
			}
		}(held[i])
	}
	wg.Wait()
	r.Queued = queued.Load()
	r.SockstatMem = sockstatMem("TCP:")
	return r
}

// udpFlood sends mib MiB of datagrams over loopback to socks sockets
// that never read, and reports the host's UDP memory while they are held
// (Queued counts the datagrams' bytes sent, delivered or dropped).
func udpFlood(socks, mib int) report.Flood {
	var r report.Flood
	var held []*net.UDPConn
	for i := 0; i < socks; i++ {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			r.FirstWriteErr = "listen: " + err.Error()
			break
		}
		_ = c.SetReadBuffer(8 << 20) // clamped to net.core.rmem_max
		held = append(held, c)
	}
	r.Conns = len(held)
	out, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		r.FirstWriteErr = "sender: " + err.Error()
		return r
	}
	buf := make([]byte, 60000)
	for r.Queued < int64(mib)<<20 && len(held) > 0 {
		for _, c := range held {
			n, err := out.WriteToUDP(buf, c.LocalAddr().(*net.UDPAddr))
			r.Queued += int64(n)
			if err != nil && r.FirstWriteErr == "" {
				r.FirstWriteErr = err.Error()
			}
		}
	}
	r.SockstatMem = sockstatMem("UDP:")
	return r
}

// sockstatMem is the "mem" figure of /proc/net/sockstat's line for proto
// ("TCP:", "UDP:"): its buffers' pages host-wide (not per namespace).
func sockstatMem(proto string) int64 {
	b, _ := os.ReadFile("/proc/net/sockstat")
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, proto) {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "mem" {
				v, _ := strconv.ParseInt(f[i+1], 10, 64)
				return v
			}
		}
	}
	return -1
}
