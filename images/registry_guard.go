package images

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"

	"github.com/paddock-build/paddock/rev2/imageref"
)

// An action names its image, and with it the host the runner connects
// to: any host the worker can reach, inside the farm's network too. Two
// guards stand between an action and that network. The registry list
// (Options.AllowedRegistries) is the operator's: with one set, a reference
// to any other registry is refused before anything is sent, cached images
// included. The address guard is always on: whatever a name resolves to,
// and wherever a registry redirects, the runner never connects to a
// link-local, multicast or unspecified address, nor to the cloud metadata
// services outside those ranges, where a request could read a machine's
// credentials.

// ErrRegistryNotAllowed is the error of a reference to a registry that
// Options.AllowedRegistries leaves out.
var ErrRegistryNotAllowed = errors.New("not one of the registries this runner pulls from (images.allowed_registries)")

// ErrAddressRefused is the error of a connection to an address the runner
// never connects to: link-local, multicast, unspecified, or a cloud
// metadata service.
var ErrAddressRefused = errors.New("an address the runner never connects to (link-local, multicast, unspecified or a cloud metadata service)")

// metadataAddrs are cloud metadata services outside the link-local ranges
// (which are refused whole): AWS's IPv6 endpoint and Alibaba Cloud's.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("fd00:ec2::254"),
	netip.MustParseAddr("100.100.100.200"),
}

// refusedAddr reports whether the runner must not connect to a.
func refusedAddr(a netip.Addr) bool {
	a = a.Unmap()
	switch {
	case a.IsLinkLocalUnicast(), a.IsLinkLocalMulticast(), a.IsInterfaceLocalMulticast(),
		a.IsMulticast(), a.IsUnspecified():
		return true
	}
	for _, m := range metadataAddrs {
		if a == m {
			return true
		}
	}
	return false
}

// guardDial is a net.Dialer's Control: it runs after name resolution and
// before connect, so it sees the address itself, redirects and DNS
// answers included.
func guardDial(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	if refusedAddr(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", address, ErrAddressRefused)
	}
	return nil
}

// guardProxy wraps the Proxy function of the runner's transport. A request
// through a proxy is one whose target the dial guard never sees (the
// runner connects to the proxy, the proxy to the registry), so the
// request's host is resolved here first and refused if any of its
// addresses is refused: an IP literal, or a name the runner resolves to
// such an address. A name the runner cannot resolve goes to the proxy, as
// in networks where only the proxy resolves names; there, and for a proxy
// whose DNS answers differ from the runner's, the proxy is trusted.
func guardProxy(proxy func(*http.Request) (*url.URL, error)) func(*http.Request) (*url.URL, error) {
	return func(req *http.Request) (*url.URL, error) {
		u, err := proxy(req)
		if err != nil || u == nil {
			return u, err
		}
		host := req.URL.Hostname()
		addrs, err := net.DefaultResolver.LookupNetIP(req.Context(), "ip", host)
		if err != nil {
			return u, nil
		}
		for _, a := range addrs {
			if refusedAddr(a) {
				return nil, fmt.Errorf("proxied request to %s (%s): %w", host, a, ErrAddressRefused)
			}
		}
		return u, nil
	}
}

// registryList is Options.AllowedRegistries parsed: entries "host",
// "host:port" and "*.domain". An empty list allows every registry.
type registryList struct {
	hosts    map[string]bool // "host" (any port) or "host:port"
	suffixes []string        // ".domain", from "*.domain"
}

func newRegistryList(entries []string) (registryList, error) {
	l := registryList{hosts: map[string]bool{}}
	for _, e := range entries {
		e = strings.ToLower(e)
		if domain, ok := strings.CutPrefix(e, "*."); ok {
			if !imageref.IsHost(domain) || strings.ContainsAny(domain, ":[") {
				return l, fmt.Errorf("images: allowed registry %q: want host, host:port or *.domain", e)
			}
			l.suffixes = append(l.suffixes, "."+domain)
			continue
		}
		if !imageref.IsHost(e) {
			return l, fmt.Errorf("images: allowed registry %q: want host, host:port or *.domain", e)
		}
		l.hosts[e] = true
	}
	return l, nil
}

// allows reports whether the list lets the runner pull from registry, a
// Reference's host[:port] (lower case).
func (l registryList) allows(registry string) bool {
	if len(l.hosts) == 0 && len(l.suffixes) == 0 {
		return true
	}
	if l.hosts[registry] {
		return true
	}
	host := registry
	if h, _, err := net.SplitHostPort(registry); err == nil {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	if l.hosts[host] {
		return true
	}
	for _, s := range l.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}
