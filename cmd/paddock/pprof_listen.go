package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"golang.org/x/net/netutil"

	"github.com/paddock-build/paddock/internal/hostguard"
)

// maxPprofConns bounds the pprof listener's connections.
const maxPprofConns = 16

// pprofFlagUsage is the help of --pprof-listen, shared by the roles that have it.
const pprofFlagUsage = "serve Go profiles (net/http/pprof, under /debug/pprof/) on this loopback address, e.g. 127.0.0.1:0; off when empty"

// startPprof serves the Go runtime's profiles on addr, for measuring a
// running farm (go tool pprof http://ADDR/debug/pprof/profile). It is off
// by default and refuses anything but a loopback address: profiles expose
// internals (goroutine stacks, command lines) and a CPU profile costs CPU.
// The handlers are on a mux of their own, not http.DefaultServeMux. The
// listener lives as long as the process. It logs and returns the address
// it listens on.
func startPprof(addr string, logger *slog.Logger) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--pprof-listen %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("--pprof-listen %q: want a loopback address (127.0.0.1, ::1 or localhost)", addr)
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("--pprof-listen: %w", err)
	}
	// A few connections at a time, each bounded in time to send its
	// request: bare, 3,000 half-sent headers held 3,000 descriptors.
	lis = netutil.LimitListener(lis, maxPprofConns)
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{
		// Only to localhost and IP addresses: a web page that rebinds its
		// name to 127.0.0.1 read goroutine stacks and the command line
		// through the operator's browser.
		Handler:           hostguard.Handler(mux),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
	}
	go func() {
		if err := srv.Serve(lis); err != nil && !errors.Is(err, net.ErrClosed) {
			logger.Warn("pprof listener stopped", "error", err)
		}
	}()
	got := lis.Addr().String()
	logger.Info("pprof listening", "addr", got)
	return got, nil
}
