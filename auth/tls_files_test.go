package auth

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/clock"
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
	defer lis.Close()
	peers := make(chan []*x509.Certificate, 4)
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			tc := c.(*tls.Conn)
			tc.Handshake()
			peers <- tc.ConnectionState().PeerCertificates
			c.Close()
		}
	}()
	issuerOf := func(client *testpki.Pair) (string, []*x509.Certificate) {
		t.Helper()
		c, err := tls.Dial("tcp", lis.Addr().String(), client.ClientConfig(t, &tls.Config{InsecureSkipVerify: true}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
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
