package hostguard

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestLocalHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:8990":       true,
		"localhost:8990":       true,
		"LOCALHOST":            true,
		"[::1]:8990":           true,
		"::1":                  true,
		"10.1.2.3":             true, // an IP literal: no DNS to rebind
		"rebound.example:8990": false,
		"localhost.evil.com":   false,
		"":                     false,
	} {
		if got := Local(host); got != want {
			t.Errorf("Local(%q) = %v, want %v", host, got, want)
		}
	}
}

func TestHandlerRefusesOtherNames(t *testing.T) {
	h := Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("ok")) // a recorder's Write cannot fail
	}))
	for host, want := range map[string]int{"127.0.0.1:9": http.StatusOK, "localhost": http.StatusOK, "rebound.example": http.StatusMisdirectedRequest} {
		r := httptest.NewRequest("GET", "/metrics", nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != want {
			t.Errorf("Host %q: %d, want %d", host, w.Code, want)
		}
	}
}

func TestLoopback(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:0": true, "[::1]:80": true, "localhost:1": true, ":8990": false, "0.0.0.0:1": false, "10.0.0.1:1": false} {
		if got := Loopback(addr); got != want {
			t.Errorf("Loopback(%q) = %v, want %v", addr, got, want)
		}
	}
}
