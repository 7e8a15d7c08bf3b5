package auth_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/grpclimit"
	"github.com/paddock-build/paddock/internal/grpctest"
	"github.com/paddock-build/paddock/internal/testpki"
	"github.com/paddock-build/paddock/storage"
)

// A connection whose client certificate has expired since its handshake
// is no longer authenticated by it: alice's certificate is good for an
// hour; on one connection, FindMissingBlobs succeeds, then, with the
// policy's clock moved past the certificate's NotAfter, is refused
// UNAUTHENTICATED, saying when it expired. A new connection with a renewed
// certificate is served. Before, TLS verified the certificate at the
// handshake only, and the connection stayed authenticated as long as the
// client kept it open (calls 25 s past expiry succeeded in an outside
// test). The server is set up as a role's: ServerTLS, the interceptors
// and their admission in the tap.
func TestExpiredClientCertificateOnAnOpenConnection(t *testing.T) {
	start := time.Now()
	fake := clock.NewFake(start)
	policy := loadTestPolicy(t)
	auth.SetPolicyClock(policy, fake)

	serverCA := testpki.NewCA(t, "server-ca")
	server := serverCA.Server("server")
	clients := newClientCA(t, start.Add(24*time.Hour))
	alice := pkix.Name{CommonName: "alice", Organization: []string{"team-a"}}
	short, shortExpiry := clients.issue(t, "alice-short", alice, start.Add(time.Hour))
	renewed, _ := clients.issue(t, "alice-renewed", alice, start.Add(3*time.Hour))

	stls, err := auth.ServerTLS(auth.TLSFiles{Cert: server.Cert, Key: server.Key, CA: clients.file}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ic := auth.NewInterceptors(policy, nil)
	cas := storage.NewServer(storage.ServerOptions{CAS: storage.NewMemoryBlobStore(), AC: storage.NewMemoryActionCache()})
	t.Cleanup(cas.Close)
	addr := grpctest.Listen(t, cas.Register,
		append(ic.ServerOptions(), grpclimit.WithAdmission(ic.Admit), grpc.Creds(credentials.NewTLS(stls)))...)
	dial := func(client testpki.Pair) *grpc.ClientConn {
		t.Helper()
		cfg, err := auth.ClientTLS(auth.TLSFiles{CA: serverCA.Cert, Cert: client.Cert, Key: client.Key}, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn
	}

	conn := dial(short)
	if err := findMissing(t.Context(), conn, "team-a"); err != nil {
		t.Fatalf("before the certificate expired: %v", err)
	}
	fake.Advance(shortExpiry.Sub(start))
	if err := findMissing(t.Context(), conn, "team-a"); err != nil {
		t.Fatalf("at the certificate's NotAfter (still valid, as in x509): %v", err)
	}
	fake.Advance(time.Second)
	wantCode(t, findMissing(t.Context(), conn, "team-a"), codes.Unauthenticated, "a call after the certificate expired, on the same connection",
		"client certificate expired at "+shortExpiry.UTC().Format(time.RFC3339), "reconnect with a renewed certificate")
	if err := findMissing(t.Context(), dial(renewed), "team-a"); err != nil {
		t.Fatalf("a new connection with a renewed certificate: %v", err)
	}
}

// clientCA is a client CA of a test's own, which issues certificates
// with the expiry the test chooses (testpki's last a day).
type clientCA struct {
	file string // PEM of the CA certificate
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newClientCA(t *testing.T, notAfter time.Time) *clientCA {
	t.Helper()
	ca := &clientCA{dir: t.TempDir(), key: newECKey(t)}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "clients"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &ca.key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	if ca.cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	ca.file = filepath.Join(ca.dir, "ca.pem")
	writePEMFile(t, ca.file, "CERTIFICATE", der)
	return ca
}

// issue writes a client certificate for subject valid until notAfter
// (and its key) as name.pem and name-key.pem; it returns them and
// NotAfter as the certificate holds it (to the second).
func (ca *clientCA) issue(t *testing.T, name string, subject pkix.Name, notAfter time.Time) (testpki.Pair, time.Time) {
	t.Helper()
	key := newECKey(t)
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := testpki.Pair{Cert: filepath.Join(ca.dir, name+".pem"), Key: filepath.Join(ca.dir, name+"-key.pem")}
	writePEMFile(t, p.Cert, "CERTIFICATE", der)
	writePEMFile(t, p.Key, "PRIVATE KEY", kder)
	return p, cert.NotAfter
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func writePEMFile(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
