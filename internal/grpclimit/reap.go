package grpclimit

import (
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stalled reports whether c breaks l: a backlog and less than minProgress
// of it taken by the client in StallTimeout, or a request arriving for
// longer than RequestTimeout.
func (c *sendConn) stalled(l *ConnLimits) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unread() > 0 && time.Since(c.lastProgress) > l.StallTimeout {
		if !c.ackedProgress() {
			return true
		}
	}
	for rpc, begun := range c.receiving {
		limit := l.RequestTimeout
		if rpc.public {
			limit = min(limit, publicRequestTimeout)
		}
		if time.Since(begun) > limit {
			return true
		}
	}
	return false
}

// reapStalled closes, every second or so, the connections that have bytes
// queued and whose client took less than minProgress of them in
// StallTimeout, and those with a unary request that has not arrived
// within RequestTimeout.
func reapStalled() {
	for {
		l := connLimits.Load()
		time.Sleep(min(l.StallTimeout/4, l.RequestTimeout/4, time.Second))
		reapOnce(l)
	}
}

// reapOnce closes the connections stalled now. It holds backlog.mu only to
// copy the list, so Accept and Close wait for no connection's lock.
func reapOnce(l *ConnLimits) {
	backlog.mu.Lock()
	conns := make([]*sendConn, 0, len(backlog.conns))
	for _, c := range backlog.conns {
		conns = append(conns, c)
	}
	backlog.mu.Unlock()
	for _, c := range conns {
		if c.stalled(l) {
			_ = c.Close() // dropping a stalled client: nothing to do if closing fails
		}
	}
}

// ackedProgress reports whether the client has acknowledged minProgress
// bytes since the last look (the kernel's count, TCP_INFO bytes_acked),
// and marks it progress if so. Writes show it late: a write returns only
// once the kernel has taken all of it, and with a send buffer of
// megabytes the kernel lets a blocked writer on only after a third of it
// has drained, so a client steadily reading 3 to 6 KiB/s showed no write
// for minutes and was closed as stalled (outside probe). The first look
// at a connection counts what it was ever acknowledged. Called with c.mu
// held; false where the kernel cannot say (not TCP).
func (c *sendConn) ackedProgress() bool {
	acked, ok := bytesAcked(c.Conn)
	if !ok || acked-c.ackedAt < minProgress {
		return false
	}
	c.ackedAt = acked
	c.lastProgress = time.Now()
	return true
}

// bytesAcked is how many bytes the peer of conn, a TCP connection, has
// acknowledged.
func bytesAcked(conn net.Conn) (int64, bool) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return 0, false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var info *unix.TCPInfo
	var ierr error
	if err := raw.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil || ierr != nil {
		return 0, false
	}
	return int64(info.Bytes_acked), true
}
