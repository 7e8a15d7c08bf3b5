package auth

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"time"
)

// A role's connections to another (the scheduler's and the worker's to
// storage, the worker's to the scheduler) live for days, and a TLS client
// certificate is presented only at a connection's handshake: one renewed
// in place before it expired was read for new connections, but the open
// ones went on with the old one, which the server refuses once it has
// expired (authenticate.go, unexpiredChain). An outside probe's farm then
// failed every build, UNAUTHENTICATED, until its roles were restarted.
// So a client connection made with a certificate is closed shortly before
// that certificate expires (certCloseMargin), or at its expiry when the
// connection is younger than that: gRPC then dials again, presenting the
// certificate files as they are by then.

// certCloseMargin is how long before its certificate expires a
// connection is closed: room for the server's clock to run ahead.
const certCloseMargin = 30 * time.Second

// expiringConn is a connection closed when its certificate expires; its
// timer stops when it is closed earlier.
type expiringConn struct {
	net.Conn
	timer *time.Timer
}

func (c *expiringConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

// closedAtExpiry returns conn, made with the client certificate cert, set
// to close when cert's chain is about to expire; conn itself when it has
// expired already (the server refuses it) or cannot be read.
func closedAtExpiry(conn net.Conn, cert *tls.Certificate, log *slog.Logger) net.Conn {
	notAfter, ok := chainNotAfter(cert)
	if !ok {
		return conn
	}
	left := time.Until(notAfter)
	if left <= 0 {
		return conn
	}
	wait := left - certCloseMargin
	if wait <= 0 {
		wait = left
	}
	c := &expiringConn{Conn: conn}
	c.timer = time.AfterFunc(wait, func() {
		log.Info("tls: closing a connection whose client certificate chain expires; the next one presents the certificate files as they are now",
			"remote", conn.RemoteAddr().String(), "not_after", notAfter)
		_ = conn.Close()
	})
	return c
}

// chainNotAfter is when the first certificate of cert's chain (the leaf
// and the intermediates sent with it) expires: the server refuses the
// connection's calls from then on (unexpiredChain). Timed from the leaf
// alone, an intermediate renewed in place before its expiry was never
// presented, and every call failed UNAUTHENTICATED until a restart. ok
// is false when no certificate of the chain parses.
func chainNotAfter(cert *tls.Certificate) (notAfter time.Time, ok bool) {
	for i, der := range cert.Certificate {
		c := cert.Leaf
		if i > 0 || c == nil {
			var err error
			if c, err = x509.ParseCertificate(der); err != nil {
				continue
			}
		}
		if !ok || c.NotAfter.Before(notAfter) {
			notAfter, ok = c.NotAfter, true
		}
	}
	return notAfter, ok
}
