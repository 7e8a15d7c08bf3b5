package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/internal/testpki"
)

// TestStatusPageListenerExposure: the status page's HTTP listener follows
// the gRPC listeners' rule: off loopback it needs TLS and a policy, or
// --insecure; a UNIX socket is local.
func TestStatusPageListenerExposure(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	var sec serverSecurity
	for _, c := range []struct {
		addr      string
		policy    bool
		insecure  bool
		wantError bool
	}{
		{"127.0.0.1:8990", false, false, false},
		{"localhost:0", false, false, false},
		{"unix:/run/paddock/http.sock", false, false, false},
		{"0.0.0.0:8990", false, false, true},
		{"0.0.0.0:8990", true, false, true}, // a policy, but tokens in the clear
		{"0.0.0.0:8990", false, true, false},
	} {
		sec.insecure = c.insecure
		cfg, err := sec.statusPageTLS(c.addr, c.policy, log)
		if (err != nil) != c.wantError || cfg != nil {
			t.Errorf("statusPageTLS(%s, policy %v, insecure %v) = %v, %v; want error %v", c.addr, c.policy, c.insecure, cfg, err, c.wantError)
		}
		if err != nil && !strings.Contains(err.Error(), "--http-listen") {
			t.Errorf("the error %q does not name --http-listen", err)
		}
	}
}

// TestStatusPageOverMTLS: with the role's certificate the status page is
// served over HTTPS, its client CA admits certificate identities, and an
// admin's browser certificate drains a worker with the page's form (its
// CSRF token bound to that identity); without credentials it is 401,
// while /healthz stays open to probes.
func TestStatusPageOverMTLS(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	server := ca.Server("server")
	admin := ca.Client("admin", pkix.Name{CommonName: "admin"}, "spiffe://test/admin")
	policy := farmtest.Policy(t, `tenants:
  - name: operators
    instance_prefixes: [ops]
    identities:
      - name: on-call
        certificate: spiffe://test/admin
        permissions: [admin]
`)
	log := slog.New(slog.DiscardHandler)
	sec := serverSecurity{tls: auth.TLSFiles{Cert: server.Cert, Key: server.Key, CA: ca.Cert}}
	cfg, err := sec.statusPageTLS("127.0.0.1:0", true, log)
	if err != nil || cfg == nil {
		t.Fatalf("statusPageTLS = %v, %v; want a TLS config", cfg, err)
	}
	f := farmtest.Start(t, farmtest.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, err := newObservability(log).startHTTP(ctx, "127.0.0.1:0", cfg, statusRoutes(f.Scheduler, f.CAS, f.AC, policy, log))
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + addr
	pem, _ := os.ReadFile(ca.Cert)
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	client := func(pair *testpki.Pair) *http.Client {
		c := pair.ClientConfig(t, &tls.Config{RootCAs: roots})
		return &http.Client{Transport: &http.Transport{TLSClientConfig: c, ForceAttemptHTTP2: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	do := func(c *http.Client, method, path string, form url.Values) (int, string) {
		t.Helper()
		var resp *http.Response
		var err error
		if method == "POST" {
			resp, err = c.PostForm(base+path, form)
		} else {
			resp, err = c.Get(base + path)
		}
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do(client(nil), "GET", "/healthz", nil); code != 200 {
		t.Errorf("/healthz over TLS: %d, want 200 without credentials", code)
	}
	if code, _ := do(client(nil), "GET", "/", nil); code != http.StatusUnauthorized {
		t.Errorf("the page without credentials: %d, want 401", code)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(f.Scheduler.Workers()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c := client(&admin)
	code, page := do(c, "GET", "/", nil)
	m := regexp.MustCompile(`action="/workers/farmtest/drain"><input type="hidden" name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
	if code != 200 || m == nil {
		t.Fatalf("the page with the admin's certificate: %d, want the worker's Drain form:\n%s", code, page)
	}
	if code, body := do(c, "POST", "/workers/farmtest/drain", url.Values{}); code != http.StatusForbidden {
		t.Fatalf("a POST by certificate without the CSRF token: %d, want 403\n%s", code, body)
	}
	if code, body := do(c, "POST", "/workers/farmtest/drain", url.Values{"csrf": {m[1]}}); code != http.StatusSeeOther {
		t.Fatalf("Drain by certificate: %d\n%s", code, body)
	}
	if ws := f.Scheduler.Workers(); len(ws) != 1 || !ws[0].Draining {
		t.Fatalf("workers after Drain: %+v", ws)
	}
}
