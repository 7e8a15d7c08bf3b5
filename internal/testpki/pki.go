// Package testpki makes certificate authorities and certificates for tests
// of TLS and mTLS on loopback: each test generates its own, so no key is
// committed and none outlives the test.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a test certificate authority whose files live in Dir.
type CA struct {
	t    testing.TB
	Dir  string
	Cert string // PEM file of the CA certificate
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// Pair names a certificate's and its key's PEM files.
type Pair struct{ Cert, Key string }

// ClientConfig is base (a TLS client configuration: its roots, say) set to
// present p's certificate; base as is where p is nil, for a client without
// one.
func (p *Pair) ClientConfig(t testing.TB, base *tls.Config) *tls.Config {
	t.Helper()
	if p == nil {
		return base
	}
	c, err := tls.LoadX509KeyPair(p.Cert, p.Key)
	if err != nil {
		t.Fatal(err)
	}
	base.Certificates = []tls.Certificate{c}
	return base
}

// NewCA makes a CA named name, with its files in a new directory under
// t.TempDir().
func NewCA(t testing.TB, name string) *CA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	ca := &CA{t: t, Dir: dir, cert: cert, key: key, Cert: filepath.Join(dir, "ca.pem")}
	writePEM(t, ca.Cert, "CERTIFICATE", der)
	return ca
}

// Server issues a server certificate for 127.0.0.1, ::1 and localhost,
// written as file (NAME.pem, NAME-key.pem).
func (ca *CA) Server(file string) Pair {
	return ca.issue(file, pkix.Name{CommonName: "localhost"}, nil, true)
}

// Client issues a client certificate with the given subject and, if
// spiffeID is set, that URI SAN.
func (ca *CA) Client(file string, subject pkix.Name, spiffeID string) Pair {
	var uris []*url.URL
	if spiffeID != "" {
		u, err := url.Parse(spiffeID)
		if err != nil {
			ca.t.Fatal(err)
		}
		uris = append(uris, u)
	}
	return ca.issue(file, subject, uris, false)
}

// ClientUntil issues a client certificate with the given subject that
// expires at notAfter.
func (ca *CA) ClientUntil(file string, subject pkix.Name, notAfter time.Time) Pair {
	return ca.issueUntil(file, subject, nil, false, notAfter)
}

func (ca *CA) issue(file string, subject pkix.Name, uris []*url.URL, server bool) Pair {
	return ca.issueUntil(file, subject, uris, server, time.Now().Add(24*time.Hour))
}

func (ca *CA) issueUntil(file string, subject pkix.Name, uris []*url.URL, server bool, notAfter time.Time) Pair {
	ca.t.Helper()
	key := newKey(ca.t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(ca.t),
		Subject:      subject,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		URIs:         uris,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		ca.t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		ca.t.Fatal(err)
	}
	p := Pair{Cert: filepath.Join(ca.Dir, file+".pem"), Key: filepath.Join(ca.Dir, file+"-key.pem")}
	writePEM(ca.t, p.Cert, "CERTIFICATE", der)
	writePEM(ca.t, p.Key, "PRIVATE KEY", kder)
	return p
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writePEM writes atomically (temp file and rename), as a certificate
// renewal should, so a reloading server never reads half a file.
func writePEM(t testing.TB, path, typ string, der []byte) {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
