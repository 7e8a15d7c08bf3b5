package auth

import (
	"fmt"
	"log/slog"
	"net"
)

// CheckExposure refuses to serve a non-loopback address without both TLS
// and a policy unless the operator said insecure explicitly, in which case
// it logs a warning. On loopback, plaintext without a policy is the
// default of `paddock up`: only this machine can connect.
func CheckExposure(addr string, tls, policy, insecure bool, log *slog.Logger) error {
	if tls && policy || isLoopback(addr) {
		return nil
	}
	if !insecure {
		return fmt.Errorf("listening on %s, which is not a loopback address, needs TLS (--tls-cert, --tls-key) and an auth policy (--auth); pass --insecure to serve it anyway", addr)
	}
	log.Warn("serving a non-loopback address without TLS and authentication (--insecure): any host that reaches it can read, write and run anything", "address", addr, "tls", tls, "auth", policy)
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && isLoopbackHost(host)
}

// isLoopbackHost reports whether host, a name or an address without a
// port, is "localhost" or a loopback address.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
