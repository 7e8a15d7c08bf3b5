package statuspage_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/farmtest"
	"github.com/paddock-build/paddock/statuspage"
)

const (
	adminToken  = "admin-token-0123456789abcdef"
	clientToken = "client-token-0123456789abcdef"
)

// testPolicy has an admin (operators/on-call) and a client with every
// permission but admin (team-a/ci).
func testPolicy(t *testing.T) *auth.Policy {
	t.Helper()
	sum := func(s string) string { h := sha256.Sum256([]byte(s)); return hex.EncodeToString(h[:]) }
	yaml := `tenants:
  - name: team-a
    instance_prefixes: [team-a]
    identities:
      - name: ci
        token_sha256: ` + sum(clientToken) + `
        permissions: [cas-read, cas-write, ac-read, execute]
  - name: operators
    instance_prefixes: [ops]
    identities:
      - name: on-call
        token_sha256: ` + sum(adminToken) + `
        permissions: [admin]
`
	return farmtest.Policy(t, yaml)
}

func serve(t *testing.T, opts statuspage.Options) *httptest.Server {
	mux := http.NewServeMux()
	statuspage.New(opts).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// call sends one request without following redirects. header pairs are
// name, value.
func call(t *testing.T, method, u string, form url.Values, header ...string) (*http.Response, string) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1]
			continue
		}
		req.Header.Add(header[i], header[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, page string) string {
	t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

func draining(t *testing.T, f *farmtest.Farm) bool {
	t.Helper()
	for _, w := range f.Scheduler.Workers() {
		if w.ID == "farmtest" {
			return w.Draining
		}
	}
	t.Fatal("worker farmtest is not listed")
	return false
}

// waitWorker waits for the farm's worker to register.
func waitWorker(t *testing.T, f *farmtest.Farm) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(f.Scheduler.Workers()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the farm's worker did not register")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantResponse(t *testing.T, what string, resp *http.Response, body string, code int, want string) {
	t.Helper()
	if resp.StatusCode != code || !strings.Contains(body, want) {
		t.Fatalf("%s: %d, want %d with %q in:\n%s", what, resp.StatusCode, code, want, body)
	}
}

// TestWorkerButtonsWithoutPolicy: without a policy anyone who reaches the
// page drains and undrains with its buttons, and the farm runs actions
// again after the undrain; but a GET changes nothing, a POST needs the
// page's CSRF token and this site's origin, and the page answers only to
// localhost and IP addresses (no DNS rebinding).
func TestWorkerButtonsWithoutPolicy(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	waitWorker(t, f)
	srv := serve(t, statuspage.Options{Scheduler: f.Scheduler, CAS: f.CAS, AC: f.AC})
	resp, page := call(t, "GET", srv.URL+"/", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, `action="/workers/farmtest/drain"`) || strings.Contains(page, "Undrain") {
		t.Fatalf("overview: %d, want a Drain button on the worker row:\n%s", resp.StatusCode, page)
	}
	if cc := resp.Header.Get("Content-Security-Policy"); !strings.Contains(cc, "frame-ancestors 'none'") || !strings.Contains(cc, "form-action 'self'") {
		t.Errorf("Content-Security-Policy %q lets other sites frame the buttons or forms post elsewhere", cc)
	}
	csrf := csrfOf(t, page)

	resp, _ = call(t, "GET", srv.URL+"/workers/farmtest/drain", nil)
	if resp.StatusCode != http.StatusMethodNotAllowed || draining(t, f) {
		t.Fatalf("GET of the drain URL: %d, draining %v; want 405 and no change", resp.StatusCode, draining(t, f))
	}
	resp, body := call(t, "POST", srv.URL+"/workers/farmtest/drain", url.Values{})
	wantResponse(t, "POST without a CSRF token", resp, body, 403, "no CSRF token")
	resp, body = call(t, "POST", srv.URL+"/workers/farmtest/drain", url.Values{"csrf": {"forged"}})
	wantResponse(t, "POST with a wrong CSRF token", resp, body, 403, "CSRF token is not")
	resp, body = call(t, "POST", srv.URL+"/workers/farmtest/drain", url.Values{"csrf": {csrf}}, "Sec-Fetch-Site", "cross-site")
	wantResponse(t, "POST from another site", resp, body, 403, "refused")
	resp, body = call(t, "GET", srv.URL+"/", nil, "Host", "rebound.example:80")
	wantResponse(t, "a page asked for under another host name", resp, body, 403, "localhost and IP addresses")
	if draining(t, f) {
		t.Fatal("a refused request drained the worker")
	}

	resp, _ = call(t, "POST", srv.URL+"/workers/farmtest/drain", url.Values{"csrf": {csrf}}, "Sec-Fetch-Site", "same-origin")
	if resp.StatusCode != http.StatusSeeOther || !draining(t, f) {
		t.Fatalf("Drain: %d, draining %v; want 303 and draining", resp.StatusCode, draining(t, f))
	}
	_, page = call(t, "GET", srv.URL+"/", nil)
	if !strings.Contains(page, `action="/workers/farmtest/undrain"`) || !strings.Contains(page, "draining") {
		t.Fatalf("overview of a drained worker has no Undrain button:\n%s", page)
	}
	resp, _ = call(t, "POST", srv.URL+"/workers/farmtest/undrain", url.Values{"csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther || draining(t, f) {
		t.Fatalf("Undrain: %d, draining %v; want 303 and not draining", resp.StatusCode, draining(t, f))
	}
	run(t, f, "/bin/echo", "after undrain") // waits for the result

	resp, body = call(t, "POST", srv.URL+"/workers/"+url.PathEscape("<script>x/y")+"/drain", url.Values{"csrf": {csrf}})
	wantResponse(t, "draining an unknown worker", resp, body, 404, `worker &#34;&lt;script&gt;x/y&#34; is not known`)
}

// TestPageNeedsAdminWithPolicy: with a policy nothing is served without
// credentials (401, or the login page for a browser), a client without
// admin gets 403 naming it, an admin drains with a bearer token, and a
// browser session (login form, HttpOnly SameSite=Strict cookie, CSRF
// token in the forms) undrains, signs out, and expires.
func TestPageNeedsAdminWithPolicy(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	waitWorker(t, f)
	clk := clock.NewFake(time.Now())
	srv := serve(t, statuspage.Options{Scheduler: f.Scheduler, CAS: f.CAS, AC: f.AC, Policy: testPolicy(t), Now: clk.Now, SessionTTL: time.Hour})
	drainURL, undrainURL := srv.URL+"/workers/farmtest/drain", srv.URL+"/workers/farmtest/undrain"

	resp, _ := call(t, "GET", srv.URL+"/?stage=queued", nil, "Accept", "text/html")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login?next=%2F%3Fstage%3Dqueued" {
		t.Fatalf("a browser without a session: %d to %q, want 303 to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, path := range []string{"/", "/blob/" + strings.Repeat("a", 64) + "-1", "/action/" + strings.Repeat("a", 64) + "-1"} {
		resp, body := call(t, "GET", srv.URL+path, nil)
		wantResponse(t, "GET "+path+" without credentials", resp, body, 401, "not signed in")
		if resp.Header.Get("WWW-Authenticate") == "" {
			t.Errorf("401 for %s without WWW-Authenticate", path)
		}
	}
	resp, body := call(t, "POST", drainURL, url.Values{})
	wantResponse(t, "POST without credentials", resp, body, 401, "not signed in")
	resp, body = call(t, "POST", drainURL, url.Values{}, "Authorization", "Bearer not-a-token")
	wantResponse(t, "POST with a bad token", resp, body, 401, "not valid")
	resp, body = call(t, "GET", srv.URL+"/", nil, "Authorization", "Bearer "+clientToken)
	wantResponse(t, "GET with a client token", resp, body, 403, "permission admin is not granted")
	resp, body = call(t, "POST", drainURL, url.Values{}, "Authorization", "Bearer "+clientToken)
	wantResponse(t, "POST with a client token", resp, body, 403, "permission admin is not granted")
	if draining(t, f) {
		t.Fatal("a refused request drained the worker")
	}

	// A script: the bearer token on the request; no CSRF token needed,
	// since a browser never adds that header by itself.
	resp, _ = call(t, "POST", drainURL, url.Values{}, "Authorization", "Bearer "+adminToken)
	if resp.StatusCode != http.StatusSeeOther || !draining(t, f) {
		t.Fatalf("Drain with the admin token: %d, draining %v", resp.StatusCode, draining(t, f))
	}

	// A browser: the login form.
	resp, body = call(t, "POST", srv.URL+"/login", url.Values{"token": {clientToken}, "next": {"/"}})
	wantResponse(t, "login with a client token", resp, body, 403, "permission admin is not granted")
	resp, body = call(t, "POST", srv.URL+"/login", url.Values{"token": {"wrong"}})
	wantResponse(t, "login with a bad token", resp, body, 401, "not valid")
	if len(resp.Cookies()) != 0 {
		t.Fatal("a refused login set a cookie")
	}
	resp, _ = call(t, "POST", srv.URL+"/login", url.Values{"token": {adminToken}, "next": {"//evil.example/"}})
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || loc != "/" {
		t.Fatalf("login: %d to %q, want 303 to / (never to another site)", resp.StatusCode, loc)
	}
	cookies := resp.Cookies()
	if len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Value == "" {
		t.Fatalf("session cookie %+v, want one HttpOnly SameSite=Strict cookie", cookies)
	}
	session := "paddock_session=" + cookies[0].Value
	resp, page := call(t, "GET", srv.URL+"/", nil, "Cookie", session)
	if resp.StatusCode != 200 || !strings.Contains(page, "operators/on-call") || !strings.Contains(page, `action="/workers/farmtest/undrain"`) {
		t.Fatalf("overview in a session: %d\n%s", resp.StatusCode, page)
	}
	csrf := csrfOf(t, page)
	resp, body = call(t, "POST", undrainURL, url.Values{}, "Cookie", session)
	wantResponse(t, "POST in a session without the CSRF token", resp, body, 403, "no CSRF token")
	resp, body = call(t, "POST", undrainURL, url.Values{"csrf": {csrfOf(t, mustGet(t, srv.URL+"/", "Authorization", "Bearer "+adminToken))}}, "Cookie", session)
	wantResponse(t, "POST in a session with another viewer's CSRF token", resp, body, 403, "CSRF token is not")
	resp, _ = call(t, "POST", undrainURL, url.Values{"csrf": {csrf}}, "Cookie", session)
	if resp.StatusCode != http.StatusSeeOther || draining(t, f) {
		t.Fatalf("Undrain in a session: %d, draining %v", resp.StatusCode, draining(t, f))
	}

	// Sign out ends the session on the server, whatever the browser keeps.
	resp, _ = call(t, "POST", srv.URL+"/logout", url.Values{"csrf": {csrf}}, "Cookie", session)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	resp, _ = call(t, "GET", srv.URL+"/", nil, "Cookie", session)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session still works after sign-out: %d", resp.StatusCode)
	}
	// A session expires SessionTTL after its login.
	resp, _ = call(t, "POST", srv.URL+"/login", url.Values{"token": {adminToken}})
	session = "paddock_session=" + resp.Cookies()[0].Value
	clk.Advance(59 * time.Minute)
	if resp, _ = call(t, "GET", srv.URL+"/", nil, "Cookie", session); resp.StatusCode != 200 {
		t.Fatalf("the session ended before its time: %d", resp.StatusCode)
	}
	clk.Advance(2 * time.Minute)
	if resp, _ = call(t, "GET", srv.URL+"/", nil, "Cookie", session); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the session outlived its expiry: %d", resp.StatusCode)
	}
}

func mustGet(t *testing.T, u string, header ...string) string {
	t.Helper()
	resp, body := call(t, "GET", u, nil, header...)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d\n%s", u, resp.StatusCode, body)
	}
	return body
}
