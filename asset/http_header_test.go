package asset_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/internal/testlog"
)

// headerOrigin is an origin on loopback that remembers the headers of
// every request it got, by path.
type headerOrigin struct {
	*httptest.Server
	mux  *http.ServeMux
	mu   sync.Mutex
	seen map[string][]http.Header
}

func startHeaderOrigin(t *testing.T) *headerOrigin {
	t.Helper()
	o := &headerOrigin{mux: http.NewServeMux(), seen: map[string][]http.Header{}}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.seen[r.URL.Path] = append(o.seen[r.URL.Path], r.Header.Clone())
		o.mu.Unlock()
		o.mux.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

func (o *headerOrigin) host() string { return strings.TrimPrefix(o.URL, "http://") }

// got returns the value of header name in each request to path.
func (o *headerOrigin) got(path, name string) []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []string
	for _, h := range o.seen[path] {
		out = append(out, h.Get(name))
	}
	return out
}

func (o *headerOrigin) requests() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	n := 0
	for _, hs := range o.seen {
		n += len(hs)
	}
	return n
}

// TestHeaderQualifiersReachTheirURI: Bazel sends a download's headers as
// http_header:NAME (every URI) and credentials as
// http_header_url:IDX:NAME (uris[IDX] only, winning over the first).
// Each reaches the origin with the request to its URI and no other.
func TestHeaderQualifiersReachTheirURI(t *testing.T) {
	content := []byte("private artifact\n")
	o := startHeaderOrigin(t)
	o.mux.HandleFunc("/first", http.NotFound)
	o.mux.HandleFunc("/second", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{o.host()} })
	resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
		Uris: []string{o.URL + "/first", o.URL + "/second"},
		Qualifiers: q("checksum.sri", sri(content),
			"http_header:Accept", "application/gzip",
			"http_header:X-Token", "token-for-all",
			"http_header_url:0:Authorization", "Bearer first-token",
			"http_header_url:1:Authorization", "Bearer second-token",
			"http_header_url:1:x-token", "token-for-second"),
	})
	if err != nil || resp.Status.GetCode() != 0 || resp.Uri != o.URL+"/second" {
		t.Fatalf("fetch: %v, %v", resp, err)
	}
	for _, c := range []struct{ path, header, want string }{
		{"/first", "Accept", "application/gzip"},
		{"/first", "Authorization", "Bearer first-token"},
		{"/first", "X-Token", "token-for-all"},
		{"/second", "Accept", "application/gzip"},
		{"/second", "Authorization", "Bearer second-token"},
		{"/second", "X-Token", "token-for-second"},
	} {
		if got := o.got(c.path, c.header); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s got %s %q, want %q", c.path, c.header, got, c.want)
		}
	}
	for _, qual := range resp.Qualifiers {
		if strings.HasPrefix(qual.Name, "http_header") {
			t.Errorf("the response echoes the credential qualifier %s", qual.Name)
		}
	}
}

// TestHeaderQualifiersStayOnTheirOrigin: a redirect to another origin
// (scheme, host and port) gets none of the client's headers, and nor
// does one coming back after it. Go's client would have sent all of them
// to another port of the same host, and any but Authorization and Cookie
// anywhere.
func TestHeaderQualifiersStayOnTheirOrigin(t *testing.T) {
	content := []byte("redirected artifact\n")
	home, other := startHeaderOrigin(t), startHeaderOrigin(t)
	for _, o := range []*headerOrigin{home, other} {
		o.mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	}
	home.mux.HandleFunc("/same", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/file", http.StatusFound) })
	home.mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/file", http.StatusFound)
	})
	home.mux.HandleFunc("/bounce", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/back", http.StatusFound)
	})
	home.mux.HandleFunc("/returned", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	other.mux.HandleFunc("/back", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, home.URL+"/returned", http.StatusFound)
	})
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{home.host(), other.host()} })
	for _, path := range []string{"/same", "/away", "/bounce"} {
		resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
			Uris:       []string{home.URL + path},
			Qualifiers: q("checksum.sri", sri(content), "http_header:Authorization", "Bearer tok", "http_header_url:0:X-Api-Key", "key"),
		})
		if err != nil || resp.Status.GetCode() != 0 {
			t.Fatalf("fetch of %s: %v, %v", path, resp, err)
		}
	}
	for _, c := range []struct {
		o          *headerOrigin
		path, want string
	}{
		{home, "/file", "Bearer tok"}, // same origin: kept
		{other, "/file", ""},
		{other, "/back", ""},
		{home, "/returned", ""},
	} {
		if got := c.o.got(c.path, "Authorization"); len(got) != 1 || got[0] != c.want {
			t.Errorf("%s%s got Authorization %q, want %q", c.o.URL, c.path, got, c.want)
		}
		want := map[bool]string{true: "key"}[c.want != ""]
		if got := c.o.got(c.path, "X-Api-Key"); len(got) != 1 || got[0] != want {
			t.Errorf("%s%s got X-Api-Key %q, want %q", c.o.URL, c.path, got, want)
		}
	}
}

// TestHeaderQualifiersRefused: headers that frame the request or the
// connection, speak to a proxy, or vouch for where the request comes
// from are the server's; names must be HTTP tokens, values free of
// control characters, indexes those of the request's URIs. Each refusal
// is INVALID_ARGUMENT naming the qualifier, with a BadRequest detail,
// never quoting the value, whether or not a record would answer the
// request, and nothing is fetched.
func TestHeaderQualifiersRefused(t *testing.T) {
	content := []byte("never fetched\n")
	o := startHeaderOrigin(t)
	o.mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{o.host()} })
	// A record the refused requests would otherwise be answered from.
	if resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
		Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri(content)),
	}); err != nil || resp.Status.GetCode() != 0 {
		t.Fatalf("fetch: %v, %v", resp, err)
	}
	const secret = "s3cret-value"
	var cases [][2]string // qualifier name, value
	for _, name := range []string{"Host", "content-length", "Transfer-Encoding", "Connection", "Upgrade", "Keep-Alive",
		"TE", "Trailer", "Proxy-Authorization", "Proxy-Connection", "Expect", "HTTP2-Settings", "Accept-Encoding",
		"Forwarded", "Via", "X-Forwarded-For", "X-Real-IP", "Bad Name", "Bad:Name", "", "Ünïcode", "Bad\r\nName"} {
		cases = append(cases, [2]string{"http_header:" + name, secret}, [2]string{"http_header_url:0:" + name, secret})
	}
	for _, value := range []string{secret + "\r\nX-Injected: 1", secret + "\n", secret + "\r", secret + "\x00"} {
		cases = append(cases, [2]string{"http_header:Authorization", value}, [2]string{"http_header_url:0:Authorization", value})
	}
	for _, name := range []string{"http_header_url:1:Authorization", "http_header_url:-1:Authorization", "http_header_url:x:Authorization",
		"http_header_url:01:Authorization", "http_header_url:+0:Authorization", "http_header_url:0", "http_header_url:"} {
		cases = append(cases, [2]string{name, secret})
	}
	for _, c := range cases {
		_, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
			Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri(content), c[0], c[1]),
		})
		wantCode(t, err, codes.InvalidArgument, fmt.Sprintf("%q", c[0]))
		wantViolation(t, err, c[0])
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the refusal of %q quotes its value: %v", c[0], err)
		}
	}
	_, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
		Uris: []string{o.URL + "/file"}, Qualifiers: q("checksum.sri", sri(content), "http_header:authorization", "a", "http_header:Authorization", "b"),
	})
	wantCode(t, err, codes.InvalidArgument, "names header Authorization")
	if n := o.requests(); n != 1 {
		t.Errorf("the origin got %d requests; want the first fetch's only", n)
	}
}

// wantViolation fails unless err carries a BadRequest violation of
// qualifiers.name naming qualifier.
func wantViolation(t *testing.T, err error, qualifier string) {
	t.Helper()
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				if v.Field == "qualifiers.name" && strings.Contains(v.Description, fmt.Sprintf("%q", qualifier)) {
					return
				}
			}
		}
	}
	t.Errorf("%v: no BadRequest violation naming %q", err, qualifier)
}

// TestHeaderValuesAreNeverShown: credentials sent as header qualifiers
// appear in no log line, no error or status message (the origin answering
// 401, 403 or 500, or redirecting off the allow-list), no response, and
// in no file the server keeps, fetched or pushed.
func TestHeaderValuesAreNeverShown(t *testing.T) {
	const secret = "Bearer tok-5f3c9a"
	content := []byte("secret artifact\n")
	o := startHeaderOrigin(t)
	o.mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	for _, code := range []int{401, 403, 500} {
		o.mux.HandleFunc(fmt.Sprintf("/%d", code), func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "denied: "+r.Header.Get("Authorization"), code) // an origin quoting what it got
		})
	}
	o.mux.HandleFunc("/off-list", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound) // not on the allow-list
	})
	var logs testlog.Buffer
	dir := t.TempDir()
	h := start(t, func(opts *asset.Options) {
		opts.AllowedHosts = []string{o.host()}
		opts.AllowWithoutChecksum = true
		opts.Dir = dir
		opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	var shown []string
	for _, path := range []string{"/file", "/401", "/403", "/500", "/off-list"} {
		for _, qs := range [][]*rapb.Qualifier{
			q("http_header:Authorization", secret),
			q("checksum.sri", sri(content), "http_header_url:0:Authorization", secret),
		} {
			for _, ctx := range []bool{true, false} { // status in the response, or as the call's error
				c := t.Context()
				if ctx {
					c = readsStatus(t)
				}
				resp, err := h.fetch.FetchBlob(c, &rapb.FetchBlobRequest{Uris: []string{o.URL + path}, Qualifiers: qs})
				if (path == "/file") != (err == nil && resp.Status.GetCode() == 0) {
					t.Fatalf("fetch of %s: %v, %v", path, resp, err)
				}
				shown = append(shown, fmt.Sprint(resp, err))
			}
		}
	}
	blob := h.put(t, []byte("pushed"))
	if _, err := h.push.PushBlob(t.Context(), &rapb.PushBlobRequest{Uris: []string{"urn:pushed"}, BlobDigest: blob.Proto(),
		Qualifiers: q("http_header:Authorization", secret)}); err != nil {
		t.Fatal(err)
	}
	for _, s := range shown {
		if strings.Contains(s, "tok-5f3c9a") {
			t.Errorf("a response shows the credential: %s", s)
		}
	}
	if got := logs.String(); strings.Contains(got, "tok-5f3c9a") || !strings.Contains(got, "asset fetch failed") {
		t.Errorf("the log shows the credential, or no failure:\n%s", got)
	}
	records := 0
	if err := filepath.WalkDir(dir, func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		records++
		if bytes.Contains(data, []byte("tok-5f3c9a")) {
			t.Errorf("%s holds the credential: %s", path, data)
		}
		return nil
	}); err != nil {
		t.Fatalf("reading the server's files: %v", err)
	}
	if records == 0 {
		t.Error("no record written")
	}
}

// TestCredentialRecordsAreNotShared: a record made with credentials
// answers a fetch with other credentials, or none, only when checksum.sri
// proved its content (the same bytes for everyone); otherwise that fetch
// goes to the origin, which decides. The same credentials are answered
// from the record.
func TestCredentialRecordsAreNotShared(t *testing.T) {
	private := []byte("alice's private file\n")
	o := startHeaderOrigin(t)
	o.mux.HandleFunc("/private", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer alice" {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write(private) // the client may be gone
	})
	h := start(t, func(opts *asset.Options) {
		opts.AllowedHosts = []string{o.host()}
		opts.AllowWithoutChecksum = true
	})
	fetch := func(qs ...string) (*rapb.FetchBlobResponse, error) {
		return h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{Uris: []string{o.URL + "/private"}, Qualifiers: q(qs...)})
	}
	wantFetch := func(what string, wantCode codes.Code, wantRequests int, qs ...string) {
		t.Helper()
		resp, err := fetch(qs...)
		if err != nil || codes.Code(resp.Status.GetCode()) != wantCode || o.requests() != wantRequests {
			t.Fatalf("%s: %v, %v, the origin got %d requests in all; want %s after %d", what, resp, err, o.requests(), wantCode, wantRequests)
		}
	}
	// Unverified: only the same credentials share the record.
	wantFetch("alice without a checksum", codes.OK, 1, "http_header:Authorization", "Bearer alice")
	wantFetch("alice again", codes.OK, 1, "http_header:Authorization", "Bearer alice")
	wantFetch("alice as uris[0]'s credential", codes.OK, 2, "http_header_url:0:Authorization", "Bearer alice")
	wantFetch("no credentials", codes.PermissionDenied, 3)
	wantFetch("mallory", codes.PermissionDenied, 4, "http_header:Authorization", "Bearer mallory")
	wantFetch("mallory with another header", codes.PermissionDenied, 5, "http_header:Authorization", "Bearer mallory", "http_header:X-Other", "1")

	// Verified: anyone naming the checksum gets the content, as they
	// could from the CAS.
	sum := sri(private)
	wantFetch("alice with the checksum", codes.OK, 6, "checksum.sri", sum, "http_header_url:0:Authorization", "Bearer alice")
	wantFetch("no credentials with the checksum", codes.OK, 6, "checksum.sri", sum)
	wantFetch("mallory with the checksum", codes.OK, 6, "checksum.sri", sum, "http_header:Authorization", "Bearer mallory")
}

// TestRedirectsSendNoReferer: a redirect followed sends no Referer. Go's
// client names the URL redirected from there, query string and all, so a
// token in the first URL (?access_token=…) went to the origin redirected
// to, past the rule that keeps a client's credentials on their origin.
func TestRedirectsSendNoReferer(t *testing.T) {
	content := []byte("redirected artifact\n")
	home, other := startHeaderOrigin(t), startHeaderOrigin(t)
	other.mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	home.mux.HandleFunc("/away", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+"/file", http.StatusFound)
	})
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{home.host(), other.host()} })
	resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
		Uris: []string{home.URL + "/away?access_token=secret"}, Qualifiers: q("checksum.sri", sri(content)),
	})
	if err != nil || resp.Status.GetCode() != 0 {
		t.Fatalf("fetch: %v, %v", resp, err)
	}
	if got := other.got("/file", "Referer"); len(got) != 1 || got[0] != "" {
		t.Errorf("the origin redirected to got Referer %q, want none", got)
	}
}

// Bazel before 7 (4.2.3 among them) sends .netrc and auth_patterns
// credentials as one bazel.auth_headers qualifier, a JSON object from URL
// to headers (strings, or lists of strings in later versions): refused as
// unknown, any such Bazel with a .netrc entry for its mirror could not use
// the downloader. Each header reaches the request to its URL only; a URL
// the request does not name is ignored; a header the client may not set,
// or a value that is not JSON, is refused without quoting the value.
func TestBazelAuthHeadersReachTheirURI(t *testing.T) {
	content := []byte("private artifact\n")
	o := startHeaderOrigin(t)
	o.mux.HandleFunc("/first", http.NotFound)
	o.mux.HandleFunc("/second", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	h := start(t, func(opts *asset.Options) { opts.AllowedHosts = []string{o.host()} })
	auth := fmt.Sprintf(`{%q: {"Authorization": "Basic Zmlyc3Q="}, %q: {"Authorization": ["Basic c2Vjb25k"]}, "https://elsewhere.example/x": {"Authorization": "Basic b3RoZXI="}}`,
		o.URL+"/first", o.URL+"/second")
	resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
		Uris:       []string{o.URL + "/first", o.URL + "/second"},
		Qualifiers: q("checksum.sri", sri(content), "bazel.auth_headers", auth),
	})
	if err != nil || resp.Status.GetCode() != 0 || resp.Uri != o.URL+"/second" {
		t.Fatalf("fetch: %v, %v", resp, err)
	}
	for path, want := range map[string]string{"/first": "Basic Zmlyc3Q=", "/second": "Basic c2Vjb25k"} {
		if got := o.got(path, "Authorization"); len(got) != 1 || got[0] != want {
			t.Errorf("%s got Authorization %q, want %q", path, got, want)
		}
	}
	for _, qual := range resp.Qualifiers {
		if qual.Name == "bazel.auth_headers" {
			t.Error("the response echoes the credential qualifier")
		}
	}
	const secret = "s3cret-value"
	for _, bad := range []string{
		fmt.Sprintf(`{%q: {"Host": %q}}`, o.URL+"/first", secret),
		fmt.Sprintf(`{%q: {"Authorization": "%s\r\nX-Injected: 1"}}`, o.URL+"/first", secret),
		fmt.Sprintf(`{%q: {"Authorization": 7}}`, o.URL+"/first"),
		fmt.Sprintf(`{%q: {"Authorization": null}}`, o.URL+"/first"),
		fmt.Sprintf(`{%q: {"X-Many": [%s"x"]}}`, o.URL+"/first", strings.Repeat(`"x", `, 300)),
		secret,
	} {
		_, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{
			Uris: []string{o.URL + "/first"}, Qualifiers: q("checksum.sri", sri(content), "bazel.auth_headers", bad),
		})
		wantCode(t, err, codes.InvalidArgument, `"bazel.auth_headers"`)
		wantViolation(t, err, "bazel.auth_headers")
		if err != nil && strings.Contains(err.Error(), secret) {
			t.Errorf("the refusal quotes the value: %v", err)
		}
	}
}
