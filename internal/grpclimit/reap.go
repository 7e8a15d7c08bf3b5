package grpclimit

import "time"

// stalled reports whether c breaks l: a backlog with no write for
// StallTimeout, or a request arriving for longer than RequestTimeout.
func (c *sendConn) stalled(l *ConnLimits) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unread() > 0 && time.Since(c.lastProgress) > l.StallTimeout {
		return true
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
// queued and have written none for StallTimeout, and those with a unary
// request that has not arrived within RequestTimeout.
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
