package nettest

import (
	"io"
	"net/http"
	"testing"
)

// HTTPGet fetches url with http.Get and returns the status code and the
// body; a failed request fails the test. Tests of status pages, metrics
// and health endpoints each had this helper.
func HTTPGet(t testing.TB, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
