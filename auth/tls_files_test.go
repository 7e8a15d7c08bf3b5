package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/nettest"
	"github.com/paddock-build/paddock/internal/testpki"
)

// TestServerTLSReloads: a certificate rewritten in place is served at the
// next handshake once the check interval has passed (a fake clock moves
// it), and client certificates are verified against the client CA.
func TestServerTLSReloads(t *testing.T) {
	ca1, ca2 := testpki.NewCA(t, "ca1"), testpki.NewCA(t, "ca2")
	files := ca1.Server("server")
	clients := testpki.NewCA(t, "clients")
	r, err := newTLSReloader(TLSFiles{Cert: files.Cert, Key: files.Key, CA: clients.Cert}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fake := clock.NewFake(time.Now())
	r.clock = fake
	lis, err := tls.Listen("tcp", "127.0.0.1:0", r.serverConfig())
	if err != nil {
		t.Fatal(err)
	}
	peers := make(chan []*x509.Certificate, 4)
	nettest.AcceptEach(t, lis, func(c net.Conn) {
		tc := c.(*tls.Conn)
		_ = tc.Handshake() // a failure shows as no peer certificates, which the test checks
		peers <- tc.ConnectionState().PeerCertificates
		c.Close()
	})
	issuerOf := func(client *testpki.Pair) (string, []*x509.Certificate) {
		t.Helper()
		c, err := tls.Dial("tcp", lis.Addr().String(), client.ClientConfig(t, &tls.Config{InsecureSkipVerify: true}))
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = c.Close() }() // teardown; the server may have closed first
		issuer := c.ConnectionState().PeerCertificates[0].Issuer.CommonName
		return issuer, <-peers
	}
	if got, _ := issuerOf(nil); got != "ca1" {
		t.Fatalf("served a certificate of %q, want ca1", got)
	}
	// Renew: ca2's certificate and key replace the files.
	renewed := ca2.Server("server")
	for _, f := range [][2]string{{renewed.Cert, files.Cert}, {renewed.Key, files.Key}} {
		b, _ := os.ReadFile(f[0])
		if err := os.WriteFile(f[1], b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := issuerOf(nil); got != "ca1" {
		t.Fatalf("reloaded before the check interval: served %q", got)
	}
	fake.Advance(reloadCheckInterval)
	if got, _ := issuerOf(nil); got != "ca2" {
		t.Fatalf("after renewal served a certificate of %q, want ca2", got)
	}
	// A half-written file is not loaded: the renewed certificate stays.
	if err := os.WriteFile(files.Cert, []byte("-----BEGIN CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	fake.Advance(reloadCheckInterval)
	if got, _ := issuerOf(nil); got != "ca2" {
		t.Fatalf("after a broken write served %q, want the previous ca2 certificate", got)
	}
	// A client certificate of the client CA is verified and seen.
	alice := clients.Client("alice", pkix.Name{CommonName: "alice"}, "spiffe://farm.test/alice")
	_, peer := issuerOf(&alice)
	if len(peer) != 1 {
		t.Fatalf("client certificate not seen by the server")
	}
	if ids := CertificateIdentities(peer[0]); len(ids) != 2 || ids[0] != "spiffe://farm.test/alice" || ids[1] != "CN=alice" {
		t.Errorf("identities %v, want the SPIFFE ID then the subject", ids)
	}
}

// TestCheckExposure: loopback may be plaintext; anything else needs TLS
// and a policy, or --insecure.
func TestCheckExposure(t *testing.T) {
	log := discard()
	for _, c := range []struct {
		addr                  string
		tls, policy, insecure bool
		ok                    bool
	}{
		{"127.0.0.1:8980", false, false, false, true},
		{"[::1]:8980", false, false, false, true},
		{"localhost:8980", false, false, false, true},
		{"0.0.0.0:8980", false, false, false, false},
		{":8980", false, false, false, false},
		{"10.0.0.1:8980", true, false, false, false},
		{"10.0.0.1:8980", false, true, false, false},
		{"10.0.0.1:8980", true, true, false, true},
		{"0.0.0.0:8980", false, false, true, true},
	} {
		err := CheckExposure(c.addr, c.tls, c.policy, c.insecure, log)
		if (err == nil) != c.ok {
			t.Errorf("CheckExposure(%q, tls=%v, policy=%v, insecure=%v) = %v", c.addr, c.tls, c.policy, c.insecure, err)
		}
	}
}

// TestClientTLSReloadsItsCA: a client dialling with a CA file
// (ClientCredentials) verifies each new connection's server against the CA
// as last read: after the farm's CA is rotated (the
// server's certificate and the client's CA file replaced), it connects
// once the check interval has passed, where it kept trusting only the old
// CA until restarted; and the server's name is still checked.
func TestClientTLSReloadsItsCA(t *testing.T) {
	ca1, ca2 := testpki.NewCA(t, "ca1"), testpki.NewCA(t, "ca2")
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	copyFile(t, ca1.Cert, caFile)
	r, err := newTLSReloader(TLSFiles{CA: caFile}, nil)
	if err != nil {
		t.Fatal(err)
	}
	fake := clock.NewFake(time.Now())
	r.clock = fake
	serve := func(ca *testpki.CA) string {
		t.Helper()
		pair := ca.Server("server")
		cert, err := tls.LoadX509KeyPair(pair.Cert, pair.Key)
		if err != nil {
			t.Fatal(err)
		}
		lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}})
		if err != nil {
			t.Fatal(err)
		}
		nettest.AcceptEach(t, lis, func(c net.Conn) {
			_ = c.(*tls.Conn).Handshake() // fails when the client refuses the certificate, as some dials should
			c.Close()
		})
		return lis.Addr().String()
	}
	creds := &reloadingCredentials{TransportCredentials: credentials.NewTLS(r.clientConfig("")), r: r}
	dial := func(addr, name string) error {
		raw, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		_, port, _ := net.SplitHostPort(addr)
		c, _, err := creds.Clone().ClientHandshake(context.Background(), net.JoinHostPort(name, port), raw)
		if err == nil {
			c.Close()
		}
		return err
	}
	old := serve(ca1)
	if err := dial(old, "localhost"); err != nil {
		t.Fatalf("a server of the CA: %v", err)
	}
	if err := dial(old, "other.example"); err == nil {
		t.Fatal("a server certificate for another name was accepted")
	}
	rotated := serve(ca2)
	if err := dial(rotated, "localhost"); err == nil {
		t.Fatal("a server of another CA was accepted")
	}
	copyFile(t, ca2.Cert, caFile)
	fake.Advance(reloadCheckInterval)
	if err := dial(rotated, "localhost"); err != nil {
		t.Fatalf("after the CA file was rotated: %v", err)
	}
	if err := dial(old, "localhost"); err == nil {
		t.Fatal("after rotation a server of the old CA was still accepted")
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
