package main

import (
	"io"
	"log/slog"
	"net/http"
	"testing"
)

func TestPprofListenLoopbackOnly(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:0", "127.0.0.1"} {
		if _, err := startPprof(addr, logger); err == nil {
			t.Errorf("startPprof(%q) accepted a non-loopback or malformed address", addr)
		}
	}
	addr, err := startPprof("127.0.0.1:0", logger)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(body) == 0 {
		t.Fatalf("GET /debug/pprof/cmdline: %s, %d bytes", resp.Status, len(body))
	}
}
