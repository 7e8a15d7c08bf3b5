package asset_test

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	rapb "github.com/bazelbuild/remote-apis/build/bazel/remote/asset/v1"

	"github.com/paddock-build/paddock/asset"
	"github.com/paddock-build/paddock/internal/testlog"
)

// TestFetchLogsHidePasswords: fetch URLs may carry credentials
// (http://user:password@mirror/…). The server's log names every URL it
// fetched, or failed to, with the password hidden, and so are those of
// redirects that fail, a Location that does not parse included.
func TestFetchLogsHidePasswords(t *testing.T) {
	const password = "s3cr3tpass"
	content := []byte("behind a password\n")
	mux := http.NewServeMux()
	o := httptest.NewServer(mux)
	t.Cleanup(o.Close)
	host := strings.TrimPrefix(o.URL, "http://")
	withPassword := "http://user:" + password + "@" + host
	mux.HandleFunc("/file", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(content) }) // the client may be gone
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://user:"+password+"@127.0.0.1:1/gone", http.StatusFound) // nothing listens on port 1
	})
	mux.HandleFunc("/unparsable", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", withPassword+":port/x")
		w.WriteHeader(http.StatusFound)
	})
	var logs testlog.Buffer
	h := start(t, func(opts *asset.Options) {
		opts.AllowedHosts = []string{host, "127.0.0.1:1"}
		opts.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	for _, path := range []string{"/file", "/nothing", "/moved", "/unparsable"} {
		resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{Uris: []string{withPassword + path}, Qualifiers: q("checksum.sri", sri(content))})
		if err != nil || (path == "/file") != (resp.Status.GetCode() == 0) {
			t.Fatalf("fetch of %s: %v, %v", path, resp, err)
		}
	}
	// A token in the query string, as signed URLs carry, is hidden too,
	// as a value, as a parameter of its own, or in the fragment.
	for _, path := range []string{"/file?access_token=" + password + "&v=1", "/file?" + password, "/file?v=1&" + password + "#access_token=" + password} {
		if resp, err := h.fetch.FetchBlob(readsStatus(t), &rapb.FetchBlobRequest{Uris: []string{withPassword + path}, Qualifiers: q("checksum.sri", sri(content))}); err != nil || resp.Status.GetCode() != 0 {
			t.Fatalf("fetch of %s: %v, %v", path, resp, err)
		}
	}
	got := logs.String()
	if strings.Contains(got, password) {
		t.Errorf("the log shows the password:\n%s", got)
	}
	for _, want := range []string{"asset fetched", "asset fetch failed", "http://user:xxxxx@" + host + "/file", "http://user:xxxxx@" + host + "/moved", "/file?access_token=xxxxx&v=xxxxx", "/file?xxxxx", "/file?v=xxxxx&xxxxx#xxxxx"} {
		if !strings.Contains(got, want) {
			t.Errorf("the log does not show %q:\n%s", want, got)
		}
	}
}
