package images

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paddock-build/paddock/internal/clock"
)

// Options configure a Cache. Only Dir is required.
type Options struct {
	// Dir holds the cache. Layers and rootfs trees must share one
	// filesystem (rootfs trees are hard links into layers), and every
	// ancestor of Dir must be searchable (x) by the sandbox's unprivileged
	// uid, which bind-mounts rootfs trees from below it. One Cache owns a
	// directory at a time (enforced with a lock file).
	Dir string
	// Platform is picked from multi-platform indexes, as "os/arch[/variant]".
	// Empty means linux and the architecture this binary runs on.
	Platform string
	// Registries holds credentials per registry host ("gcr.io",
	// "127.0.0.1:5000"). They take precedence over DockerConfig.
	Registries map[string]Credentials
	// DockerConfig is the path of a Docker config.json whose "auths"
	// entries supply credentials. Empty means none; credential helpers
	// are not run.
	DockerConfig string
	// Tenants holds each tenant's own registry credentials, by tenant name
	// (the name RootfsFor is given; the auth policy's tenant names). A
	// tenant's credentials are used for its pulls first, then the
	// farm-wide Registries and DockerConfig, which every tenant shares.
	// With any tenant listed, the cache checks access: an image already
	// cached is served to a tenant only once the registry has let that
	// tenant's credentials (or anyone, for a public image) read its
	// manifest, within AccessTTL. Without tenants, as without a policy,
	// every caller uses the farm-wide credentials and nothing is checked.
	Tenants map[string]TenantCredentials
	// AccessTTL is how long a successful access check is trusted: a
	// tenant's, or the anonymous one that shows an image is public. Zero
	// means 5 minutes. A refusal is never remembered: the next request
	// asks the registry again.
	AccessTTL time.Duration
	// Insecure lists registry hosts that may be reached over plain HTTP.
	// Every other registry is HTTPS only, loopback included.
	Insecure []string
	// AllowedRegistries, if not empty, are the only registries images are
	// pulled from: "host" (any port), "host:port", or "*.domain" (every
	// host below domain, not domain itself). A reference to another
	// registry fails with ErrRegistryNotAllowed before anything is sent,
	// even for an image already cached. Empty means any registry an
	// action names.
	AllowedRegistries []string
	// RefreshTags is how long a tag's resolution to a digest is trusted
	// before the registry is asked again. Zero means 5 minutes. Digest
	// references are never re-resolved.
	RefreshTags time.Duration
	// MaxBytes bounds the unpacked size of the cached layers and of the
	// images' own trees (their directories and links). Images that no
	// Rootfs holds are evicted, least recently used first, when the cache
	// grows past it; an image whose layers alone add up past it is
	// refused. Zero means unbounded.
	MaxBytes int64
	// KeepSetuid keeps setuid and setgid bits from layers. Off by default:
	// cached files belong to the runner's user (often root) and sit on the
	// host, where a setuid bit would be a host privilege.
	KeepSetuid bool
	// MountPoints are directories the sandbox mounts over (its rootfs is
	// read-only, so it cannot create them). Each is made, empty, in every
	// rootfs that lacks it; nil means /proc, /dev, /sys and /tmp. An
	// action-specific one can be added with Rootfs.MkdirMountPoint.
	MountPoints []string
	// PullTimeout bounds any one piece of work that callers share: a
	// reference's pull, an image's or a layer's download. It matters for
	// callers without a deadline of their own (the runner gives each
	// pull what is left of its action's timeout): the work otherwise
	// ends once no caller waits for it. Zero means 30 minutes.
	PullTimeout time.Duration
	// ReadIdleTimeout ends a registry request that receives nothing for
	// this long: no response headers, or no more of its body, which the
	// transport's own timeouts do not cover. Zero means
	// DefaultReadIdleTimeout.
	ReadIdleTimeout time.Duration
	// Transport is the base HTTP transport; nil means one with dial,
	// TLS and response-header timeouts that never connects to a
	// link-local, multicast, unspecified or cloud metadata address
	// (ErrAddressRefused), through Proxy. Plain-HTTP requests to hosts
	// not in Insecure are refused whatever the transport.
	Transport http.RoundTripper
	// Proxy chooses the proxy of the default Transport's requests; nil
	// means the environment's (HTTPS_PROXY, HTTP_PROXY, NO_PROXY). A
	// request through a proxy is refused if its host resolves to an
	// address the runner never connects to (guardProxy).
	Proxy func(*http.Request) (*url.URL, error)
	// Logger receives pull progress; nil discards it.
	Logger *slog.Logger
	// Metrics, if set, receives the cache's collectors.
	Metrics *prometheus.Registry
	// Clock is used for tag refresh; nil means the real clock.
	Clock clock.Clock

	// removeTree deletes trees evicted or left by a previous run; nil
	// means removeTree. Tests block it to see what waits for deletion.
	removeTree func(path string, stop <-chan struct{}) error
}

// DefaultRefreshTags and DefaultAccessTTL are RefreshTags and AccessTTL
// when zero, written once: the runner's config starts from them too.
const (
	DefaultRefreshTags = 5 * time.Minute
	DefaultAccessTTL   = 5 * time.Minute
)

// DefaultReadIdleTimeout is ReadIdleTimeout when zero: as long as the
// default transport waits for response headers.
const DefaultReadIdleTimeout = 60 * time.Second

// DefaultMaxBytes is the runner's bound on its image cache unless its
// config says otherwise: an action names any image, so without a bound
// one whose layers inflate to terabytes (a few megabytes of compressed
// zeros) would fill the worker's disk.
const DefaultMaxBytes = 20 << 30

// Credentials authenticate to one registry: a username and password, or
// an identity (refresh) token.
type Credentials struct {
	Username      string
	Password      string
	IdentityToken string
}

// TenantCredentials are one tenant's registry credentials.
type TenantCredentials struct {
	// DockerConfig is the path of a Docker config.json whose "auths" hold
	// the tenant's credentials. It is read again whenever it changes; a
	// file that cannot be read fails the tenant's image requests.
	DockerConfig string
}

// withDefaults validates o and fills in its defaults.
func (o Options) withDefaults() (Options, v1.Platform, error) {
	if o.Dir == "" {
		return o, v1.Platform{}, errors.New("images: Options.Dir is required")
	}
	dir, err := filepath.Abs(o.Dir) // Rootfs paths are handed to another process
	if err != nil {
		return o, v1.Platform{}, fmt.Errorf("images: %w", err)
	}
	o.Dir = dir
	if o.Platform == "" {
		o.Platform = "linux/" + runtime.GOARCH
	}
	p, err := v1.ParsePlatform(o.Platform)
	if err != nil || p.OS == "" || p.Architecture == "" {
		return o, v1.Platform{}, fmt.Errorf("images: platform %q: want os/arch[/variant]", o.Platform)
	}
	if o.RefreshTags == 0 {
		o.RefreshTags = DefaultRefreshTags
	}
	if o.AccessTTL == 0 {
		o.AccessTTL = DefaultAccessTTL
	}
	for t, c := range o.Tenants {
		if t == "" || c.DockerConfig == "" {
			return o, v1.Platform{}, fmt.Errorf("images: tenant %q: want a tenant name and a docker config path", t)
		}
	}
	if o.PullTimeout == 0 {
		o.PullTimeout = 30 * time.Minute
	}
	if o.ReadIdleTimeout < 0 {
		return o, v1.Platform{}, fmt.Errorf("images: read idle timeout %s: want a positive duration, or zero for the default", o.ReadIdleTimeout)
	}
	if o.ReadIdleTimeout == 0 {
		o.ReadIdleTimeout = DefaultReadIdleTimeout
	}
	if o.Transport == nil {
		proxy := o.Proxy
		if proxy == nil {
			proxy = http.ProxyFromEnvironment
		}
		o.Transport = &http.Transport{
			Proxy:                 guardProxy(proxy),
			DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: guardDial}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 60 * time.Second,
			ExpectContinueTimeout: time.Second,
			// Blobs are compressed already; see httpGuard.
			DisableCompression: true,
		}
	}
	if o.MountPoints == nil {
		o.MountPoints = []string{"/proc", "/dev", "/sys", "/tmp"}
	}
	for _, p := range o.MountPoints {
		if !path.IsAbs(p) || path.Clean(p) != p || p == "/" {
			return o, v1.Platform{}, fmt.Errorf("images: mount point %q: want a clean absolute path", p)
		}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Clock = clock.OrReal(o.Clock)
	for _, h := range o.Insecure {
		if h == "" || strings.Contains(h, "/") {
			return o, v1.Platform{}, fmt.Errorf("images: insecure registry %q: want host[:port]", h)
		}
	}
	return o, *p, nil
}
