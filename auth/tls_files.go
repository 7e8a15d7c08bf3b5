package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/paddock-build/paddock/internal/clock"
)

// TLSFiles names PEM files of one end of a TLS connection. For a server:
// its certificate and key, and (optional) the CA that client certificates
// must chain to. For a client: the CA that the server's certificate must
// chain to (empty: the system's roots), and (optional) its own certificate
// and key for mTLS.
type TLSFiles struct {
	Cert, Key, CA string
}

// reloadCheckInterval bounds how often the files are stat'ed: at most once
// a second, at a handshake, so a renewed certificate is served within a
// second of being written and an idle server does no work.
const reloadCheckInterval = time.Second

// tlsReloader holds the parsed files and re-reads them when their
// modification times or sizes change. A file that fails to parse after a
// change is logged and the previous material kept, so a half-written
// renewal never takes the server down.
type tlsReloader struct {
	files TLSFiles
	log   *slog.Logger

	mu      sync.Mutex
	checked time.Time
	stamp   string
	cert    *tls.Certificate
	pool    *x509.CertPool
	clock   clock.Clock
}

func newTLSReloader(files TLSFiles, log *slog.Logger) (*tlsReloader, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &tlsReloader{files: files, log: log, clock: clock.Real{}}
	WarnIfReadableByAll(log, "TLS private key", files.Key)
	stamp, err := r.fileStamp()
	if err == nil {
		err = r.load(stamp)
	}
	if err != nil {
		return nil, err
	}
	r.checked = r.clock.Now()
	return r, nil
}

// fileStamp summarizes the files' sizes and modification times.
func (r *tlsReloader) fileStamp() (string, error) {
	s := ""
	for _, f := range []string{r.files.Cert, r.files.Key, r.files.CA} {
		if f == "" {
			continue
		}
		st, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("tls: %w", err)
		}
		s += fmt.Sprintf("%s:%d:%d;", f, st.Size(), st.ModTime().UnixNano())
	}
	return s, nil
}

// load parses the files; on success they replace the current material.
func (r *tlsReloader) load(stamp string) error {
	var cert *tls.Certificate
	if r.files.Cert != "" || r.files.Key != "" {
		if r.files.Cert == "" || r.files.Key == "" {
			return errors.New("tls: a certificate needs both the certificate and the key file")
		}
		c, err := tls.LoadX509KeyPair(r.files.Cert, r.files.Key)
		if err != nil {
			return fmt.Errorf("tls: certificate %s and key %s: %w", r.files.Cert, r.files.Key, err)
		}
		cert = &c
	}
	var pool *x509.CertPool
	if r.files.CA != "" {
		b, err := os.ReadFile(r.files.CA)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return fmt.Errorf("tls: CA file %s holds no PEM certificate", r.files.CA)
		}
	}
	r.cert, r.pool, r.stamp = cert, pool, stamp
	return nil
}

// current returns the material, re-read first if the files changed.
func (r *tlsReloader) current() (*tls.Certificate, *x509.CertPool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.clock.Now(); now.Sub(r.checked) >= reloadCheckInterval {
		r.checked = now
		stamp, err := r.fileStamp()
		if err == nil && stamp != r.stamp {
			if err = r.load(stamp); err == nil {
				r.log.Info("tls: certificate files reloaded", "cert", r.files.Cert, "ca", r.files.CA)
			}
		}
		if err != nil {
			r.log.Warn("tls: keeping the previous certificates", "error", err)
		}
	}
	return r.cert, r.pool
}

// ServerTLS returns the server side of files: Cert and Key are required;
// with CA, clients may present a certificate, which must then chain to it
// (mTLS identities); clients without one may still use a bearer token.
func ServerTLS(files TLSFiles, log *slog.Logger) (*tls.Config, error) {
	if files.Cert == "" || files.Key == "" {
		return nil, errors.New("tls: a server needs a certificate and a key")
	}
	r, err := newTLSReloader(files, log)
	if err != nil {
		return nil, err
	}
	return r.serverConfig(), nil
}

// serverConfig serves r's current material at every handshake.
func (r *tlsReloader) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			cert, pool := r.current()
			c := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2"}}
			if pool != nil {
				c.ClientCAs, c.ClientAuth = pool, tls.VerifyClientCertIfGiven
			}
			return c, nil
		},
	}
}

// ClientTLS returns the client side of files: the server is verified
// against CA (or the system roots), and Cert/Key, when set, are presented
// for mTLS. serverName overrides the name checked in the server's
// certificate ("" = the dialed host).
func ClientTLS(files TLSFiles, serverName string, log *slog.Logger) (*tls.Config, error) {
	r, err := newTLSReloader(files, log)
	if err != nil {
		return nil, err
	}
	return r.clientConfig(serverName), nil
}

// clientConfig is the client side of r's material as last read: the CA
// pool then, and the client certificate at each handshake.
func (r *tlsReloader) clientConfig(serverName string) *tls.Config {
	_, pool := r.current()
	c := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: pool, ServerName: serverName}
	if r.files.Cert != "" {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, _ := r.current()
			return cert, nil
		}
	}
	return c
}

// ClientCredentials is ClientTLS as gRPC transport credentials that
// verify each new connection's server against the CA file as last read,
// not as read at start: a farm whose CA is rotated (its files replaced)
// otherwise had its roles trust only the old CA until each restarted, and
// fail to connect once the servers presented certificates of the new one.
func ClientCredentials(files TLSFiles, serverName string, log *slog.Logger) (credentials.TransportCredentials, error) {
	r, err := newTLSReloader(files, log)
	if err != nil {
		return nil, err
	}
	return &reloadingCredentials{TransportCredentials: credentials.NewTLS(r.clientConfig(serverName)), r: r, serverName: serverName}, nil
}

// reloadingCredentials hands each client handshake to TLS credentials
// made from r's current material; the embedded ones (a snapshot) answer
// the rest (Info, and the server side, which a client never uses).
type reloadingCredentials struct {
	credentials.TransportCredentials
	r          *tlsReloader
	serverName string
}

func (c *reloadingCredentials) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg := c.r.clientConfig(c.serverName)
	var used *tls.Certificate
	if get := cfg.GetClientCertificate; get != nil {
		cfg.GetClientCertificate = func(i *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := get(i)
			used = cert
			return cert, err
		}
	}
	out, info, err := credentials.NewTLS(cfg).ClientHandshake(ctx, authority, conn)
	if err != nil || used == nil {
		return out, info, err
	}
	return closedAtExpiry(out, used, c.r.log), info, nil
}

func (c *reloadingCredentials) Clone() credentials.TransportCredentials {
	return &reloadingCredentials{TransportCredentials: c.TransportCredentials.Clone(), r: c.r, serverName: c.serverName}
}
