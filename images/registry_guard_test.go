package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/paddock-build/paddock/internal/nettest"
)

func TestRegistryListMatching(t *testing.T) {
	l, err := newRegistryList([]string{"gcr.io", "127.0.0.1:5000", "*.Example.com", "[::1]", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	for registry, want := range map[string]bool{
		"gcr.io":             true,
		"gcr.io:443":         true, // a host entry allows every port
		"127.0.0.1:5000":     true,
		"127.0.0.1:5001":     false, // a host:port entry allows that port only
		"127.0.0.1":          false,
		"a.example.com":      true,
		"b.a.example.com:99": true,
		"example.com":        false, // *.domain is the hosts below domain
		"badexample.com":     false,
		"example.com.evil":   false,
		"[::1]:5000":         true,
		"[::2]:5000":         false,
		"localhost:5000":     true,
		"gcr.io.evil.net":    false,
		"evil.net":           false,
	} {
		if got := l.allows(registry); got != want {
			t.Errorf("allows(%q) = %v, want %v", registry, got, want)
		}
	}
	empty, err := newRegistryList(nil)
	if err != nil || !empty.allows("anything.example:1") {
		t.Errorf("an empty list must allow every registry (err %v)", err)
	}
	for _, bad := range []string{"", "gcr.io/path", "*.", "*.a:5000", "http://gcr.io", "a b"} {
		if _, err := newRegistryList([]string{bad}); err == nil {
			t.Errorf("newRegistryList(%q) accepted a malformed entry", bad)
		}
	}
	if _, err := New(Options{Dir: t.TempDir(), AllowedRegistries: []string{"gcr.io/x"}}); err == nil || !strings.Contains(err.Error(), "gcr.io/x") {
		t.Errorf("New with a malformed allowed registry: %v; want an error naming it", err)
	}
}

func TestRefusedAddresses(t *testing.T) {
	for addr, want := range map[string]bool{
		"169.254.169.254":          true, // AWS, GCP, Azure metadata
		"169.254.0.1":              true,
		"fe80::1":                  true,
		"::ffff:169.254.169.254":   true, // IPv4-mapped
		"fd00:ec2::254":            true, // AWS metadata over IPv6
		"100.100.100.200":          true, // Alibaba Cloud metadata
		"0.0.0.0":                  true,
		"::":                       true,
		"224.0.0.1":                true,
		"ff02::1":                  true,
		"127.0.0.1":                false, // a registry on this machine
		"::1":                      false,
		"10.1.2.3":                 false, // a registry in the farm's network
		"192.168.1.1":              false,
		"100.100.100.201":          false,
		"fd00:ec2::253":            false,
		"142.250.74.110":           false,
		"2a00:1450:4001:80b::200e": false,
	} {
		if got := refusedAddr(netip.MustParseAddr(addr)); got != want {
			t.Errorf("refusedAddr(%s) = %v, want %v", addr, got, want)
		}
		err := guardDial("tcp", netip.AddrPortFrom(netip.MustParseAddr(addr), 443).String(), nil)
		if got := errors.Is(err, ErrAddressRefused); got != want {
			t.Errorf("guardDial(%s) = %v; refused %v, want %v", addr, err, got, want)
		}
	}
}

// A registry not on the list is refused before the runner sends it
// anything, and so is an image it served earlier, already in the cache.
func TestAllowedRegistriesAreCheckedFirst(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "app:1", busyboxImage(t, "v1"))
	dir := t.TempDir()
	before := r.totalRequests()

	c := newTestCache(t, dir, r, func(o *Options) { o.AllowedRegistries = []string{"registry.example", "127.0.0.1:1"} })
	if _, err := c.Rootfs(context.Background(), r.ref(t, "app:1")); !errors.Is(err, ErrRegistryNotAllowed) || !strings.Contains(err.Error(), r.Host) {
		t.Fatalf("Rootfs from a registry not on the list: %v; want ErrRegistryNotAllowed naming %s", err, r.Host)
	}
	if n := r.totalRequests(); n != before {
		t.Fatalf("the registry got %d requests; want none", n-before)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("closing the cache: %v", err)
	}

	// "127.0.0.1" allows the registry on any port.
	c = newTestCache(t, dir, r, func(o *Options) { o.AllowedRegistries = []string{"127.0.0.1"} })
	r.rootfs(t, c, "app:1").Release()
	if err := c.Close(); err != nil {
		t.Fatalf("closing the cache: %v", err)
	}
	before = r.totalRequests()

	c = newTestCache(t, dir, r, func(o *Options) { o.AllowedRegistries = []string{"registry.example"} })
	if _, err := c.Rootfs(context.Background(), r.ref(t, "app:1")); !errors.Is(err, ErrRegistryNotAllowed) {
		t.Fatalf("Rootfs of a cached image from a registry no longer on the list: %v; want ErrRegistryNotAllowed", err)
	}
	if n := r.totalRequests(); n != before {
		t.Fatalf("the registry got %d more requests; want none", n-before)
	}
}

// Whatever a reference names, and wherever a registry redirects, the
// runner does not connect to a refused address. The test's refused
// address is 0.0.0.0, which Linux connects to this machine: a listener
// here would see any connection that got through, and nothing leaves it.
// A redirect to an address literal is refused by go-containerregistry
// too; one to a name that resolves to a refused address (which this test
// cannot make) only by the dial guard, the same one the direct
// reference meets.
func TestRefusedAddressesAreNeverDialled(t *testing.T) {
	witness := nettest.NewWitness(t, "")
	refused := fmt.Sprintf("0.0.0.0:%d", witness.Port)

	// A registry that redirects every blob download to the refused address.
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			http.Redirect(w, req, "https://"+refused+req.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	defer redirecting.Close()
	r := &testRegistry{Host: strings.TrimPrefix(redirecting.URL, "http://"), blobGets: map[string]int{}}
	r.push(t, "app:1", busyboxImage(t, "v1"))

	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.Insecure = append(o.Insecure, refused) })
	direct := Reference{Registry: refused, Repository: "app", Tag: "1"}
	if _, err := c.Rootfs(context.Background(), direct); !errors.Is(err, ErrAddressRefused) {
		t.Errorf("Rootfs(%s): %v; want ErrAddressRefused", direct, err)
	}
	if _, err := c.Rootfs(context.Background(), r.ref(t, "app:1")); err == nil {
		t.Errorf("Rootfs(%s) through a redirect to %s succeeded", r.ref(t, "app:1"), refused)
	}
	if n := witness.Accepted(); n != 0 {
		t.Fatalf("%d connections reached the refused address", n)
	}
}

// TestProxyDoesNotCarryRequestsToRefusedAddresses: through a proxy the
// dial guard sees only the proxy's address, so a request whose registry is
// a refused address is refused before it is handed to the proxy, while a
// request for any other registry still goes through the proxy (here a
// witness that answers nothing).
func TestProxyDoesNotCarryRequestsToRefusedAddresses(t *testing.T) {
	proxy := nettest.NewWitness(t, "")
	c := newTestCache(t, t.TempDir(), nil, func(o *Options) {
		o.Proxy = func(*http.Request) (*url.URL, error) {
			return &url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", proxy.Port)}, nil
		}
	})
	ctx := context.Background()
	for _, registry := range []string{"169.254.169.254", "[fd00:ec2::254]", "100.100.100.200:5000", "[ff02::1]:443"} {
		ref := Reference{Registry: registry, Repository: "app", Tag: "1"}
		if _, err := c.Rootfs(ctx, ref); !errors.Is(err, ErrAddressRefused) {
			t.Errorf("Rootfs(%s) through a proxy: %v; want ErrAddressRefused", ref, err)
		}
	}
	if n := proxy.Accepted(); n != 0 {
		t.Fatalf("%d requests for refused addresses reached the proxy", n)
	}
	other := Reference{Registry: "registry.example", Repository: "app", Tag: "1"}
	if _, err := c.Rootfs(ctx, other); err == nil || errors.Is(err, ErrAddressRefused) {
		t.Errorf("Rootfs(%s) through a proxy that answers nothing: %v", other, err)
	}
	if proxy.Accepted() == 0 {
		t.Fatal("a request for another registry did not go through the proxy")
	}
}
