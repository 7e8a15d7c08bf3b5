package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"

	"github.com/paddock-build/paddock/internal/testpki"
)

// A client certificate renewed in place reaches the server on a
// long-lived connection once the old one expires: the connection made
// with the old certificate is closed at its expiry, and the next call
// dials again with the files as they are then. Before, the connection
// went on with the expired certificate, which the server refuses, and a
// farm failed every build until its roles were restarted (outside
// probe).
func TestRenewedClientCertificateIsUsedOnceTheOldExpires(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	server := ca.Server("server")
	serverCert, err := tls.LoadX509KeyPair(server.Cert, server.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(ca.Cert)
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(caPEM)
	var mu sync.Mutex
	var seen []string // the client certificate's common name, per call
	record := func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p, _ := peer.FromContext(ctx)
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			mu.Lock()
			seen = append(seen, ti.State.PeerCertificates[0].Subject.CommonName)
			mu.Unlock()
		}
		return h(ctx, req)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert},
		ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert})), grpc.UnaryInterceptor(record))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	expires := time.Now().Add(2 * time.Second)
	files := ca.ClientUntil("client", pkix.Name{CommonName: "old"}, expires)
	creds, err := ClientCredentials(TLSFiles{Cert: files.Cert, Key: files.Key, CA: ca.Cert}, "localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := healthpb.NewHealthClient(conn)
	check := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
		return err
	}
	if err := check(); err != nil {
		t.Fatal(err)
	}
	// Renewed in place, as cert-manager does, well before the expiry.
	renewed := ca.ClientUntil("renewed", pkix.Name{CommonName: "renewed"}, time.Now().Add(time.Hour))
	copyFile(t, renewed.Cert, files.Cert)
	copyFile(t, renewed.Key, files.Key)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_ = check() // a call the closing connection takes down may fail
		mu.Lock()
		last := seen[len(seen)-1]
		mu.Unlock()
		if last == "renewed" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calls at %s, past the old certificate's expiry at %s, still present it", time.Now().Format(time.TimeOnly), expires.Format(time.TimeOnly))
		}
	}
}

// TestChainExpiryIsTheFirstOfItsCertificates: a connection is closed
// before the first certificate of the chain it presented expires, an
// intermediate included: the server refuses the chain from then on, and
// timed from the leaf alone, an intermediate renewed in place was never
// presented on the open connections (outside probe: every call failed
// UNAUTHENTICATED until the roles were restarted).
func TestChainExpiryIsTheFirstOfItsCertificates(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	der := func(notAfter time.Time) []byte {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: now.Add(-time.Hour), NotAfter: notAfter}
		b, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	leaf, intermediate := now.Add(24*time.Hour), now.Add(2*time.Minute)
	for _, tc := range []struct {
		name  string
		chain [][]byte
		want  time.Time
	}{
		{"leaf alone", [][]byte{der(leaf)}, leaf},
		{"intermediate expires first", [][]byte{der(leaf), der(intermediate)}, intermediate},
		{"leaf expires first", [][]byte{der(intermediate), der(leaf)}, intermediate},
		{"an unreadable intermediate", [][]byte{der(leaf), []byte("garbage")}, leaf},
	} {
		got, ok := chainNotAfter(&tls.Certificate{Certificate: tc.chain})
		if !ok || !got.Equal(tc.want) {
			t.Errorf("%s: the chain expires at %v (%v), want %v", tc.name, got, ok, tc.want)
		}
	}
	if _, ok := chainNotAfter(&tls.Certificate{}); ok {
		t.Error("an empty chain has an expiry")
	}
}
