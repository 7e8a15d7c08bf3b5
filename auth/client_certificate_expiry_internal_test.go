package auth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/internal/clock"
)

// TestUnexpiredChain: a call is authenticated by its connection's
// verified chains while one of them has no certificate past its NotAfter
// (the instant itself still valid, as x509 has it); else UNAUTHENTICATED,
// naming the certificate of the first chain that expired first: the
// client's own, or an issuer.
func TestUnexpiredChain(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cert := func(cn string, notAfter time.Time) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, NotAfter: notAfter}
	}
	leaf := cert("alice", now.Add(time.Hour))
	expiredLeaf := cert("alice", now.Add(-time.Minute))
	ca := cert("clients", now.Add(24*time.Hour))
	expiredCA := cert("old-clients", now.Add(-2*time.Minute))
	otherCA := cert("other-clients", now.Add(24*time.Hour))
	for _, c := range []struct {
		name   string
		chains [][]*x509.Certificate
		want   string // fragment of the refusal; "" for none
	}{
		{"valid", [][]*x509.Certificate{{leaf, ca}}, ""},
		{"leaf alone", [][]*x509.Certificate{{leaf}}, ""},
		{"at NotAfter", [][]*x509.Certificate{{cert("alice", now), ca}}, ""},
		{"leaf expired", [][]*x509.Certificate{{expiredLeaf, ca}}, "the client certificate expired at 2026-03-01T11:59:00Z: reconnect with a renewed certificate"},
		{"issuer expired", [][]*x509.Certificate{{leaf, expiredCA}}, `issuer "CN=old-clients" expired at 2026-03-01T11:58:00Z`},
		{"both expired: the first to", [][]*x509.Certificate{{expiredLeaf, expiredCA}}, `issuer "CN=old-clients" expired at 2026-03-01T11:58:00Z`},
		{"another chain still valid", [][]*x509.Certificate{{leaf, expiredCA}, {leaf, otherCA}}, ""},
		{"every chain expired", [][]*x509.Certificate{{leaf, expiredCA}, {expiredLeaf, otherCA}}, `issuer "CN=old-clients"`},
	} {
		err := unexpiredChain(c.chains, now)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v, want authenticated", c.name, err)
			}
			continue
		}
		if st := status.Convert(err); st.Code() != codes.Unauthenticated || !strings.Contains(st.Message(), c.want) {
			t.Errorf("%s: %v, want UNAUTHENTICATED saying %q", c.name, err, c.want)
		}
	}
	// It runs on every call authenticated by a certificate.
	chains := [][]*x509.Certificate{{leaf, ca}}
	if n := testing.AllocsPerRun(100, func() { _ = unexpiredChain(chains, now) }); n != 0 {
		t.Errorf("a valid chain's check allocates %v times, want 0", n)
	}
}

// TestAuthenticateCertificateExpired: the status page's check of an
// HTTPS request's client certificate (AuthenticateCertificate) refuses
// one that has expired since its keep-alive connection's handshake.
func TestAuthenticateCertificateExpired(t *testing.T) {
	p, err := compilePolicy([]byte(`tenants:
  - name: a
    instance_prefixes: [a]
    identities:
      - {certificate: "CN=alice", permissions: [admin]}
`), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fake := clock.NewFake(start)
	p.clock = fake
	alice := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, NotAfter: start.Add(time.Hour)}
	if pr, err := p.AuthenticateCertificate(alice); err != nil || pr.Tenant != "a" {
		t.Fatalf("before expiry: %+v, %v", pr, err)
	}
	fake.Advance(time.Hour + time.Second)
	if _, err := p.AuthenticateCertificate(alice); status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("after expiry: %v, want UNAUTHENTICATED saying when it expired", err)
	}
}
