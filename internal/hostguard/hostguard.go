// Package hostguard keeps web pages of other sites away from HTTP
// listeners that only this machine reaches. A page can rebind its own
// name to 127.0.0.1 and then read, through the visitor's browser, what a
// loopback listener answers without credentials (metrics naming every
// tenant's instances, goroutine stacks, command lines); its requests
// still carry its own name in Host. Such a listener answers only requests
// addressed to localhost or an IP address.
package hostguard

import (
	"net"
	"net/http"
	"strings"
)

// Local reports whether a Host header names this machine the way no other
// site can: localhost or an IP address (a site's own name, rebound to
// 127.0.0.1, is neither).
func Local(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	return strings.EqualFold(host, "localhost") || net.ParseIP(host) != nil
}

// Handler serves next for requests whose Host is Local, and refuses the
// others with 421 Misdirected Request.
func Handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !Local(r.Host) {
			http.Error(w, "this listener answers only to localhost and IP addresses", http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Loopback reports whether addr (host:port) listens on loopback only, so
// that Handler applies: a listener others reach is named by whatever
// name they use.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
