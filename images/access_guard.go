package images

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/paddock-build/paddock/internal/clock"
)

// ErrAccessDenied is wrapped by the errors of requests for an image that
// the registry does not let the requesting tenant read. The runner answers
// them with PERMISSION_DENIED.
var ErrAccessDenied = errors.New("access denied")

// anonymousKeychain resolves every registry to no credentials: the
// check of whether an image is public.
var anonymousKeychain = authn.NewMultiKeychain()

// accessGuard decides which credentials a tenant's requests use and
// whether a tenant may use an image the cache already holds. The cache is
// shared by every tenant on the worker, so an image tenant A pulled with
// its credentials is on disk when tenant B asks for it; handing it to B
// without asking the registry would let B read A's private image. So,
// when tenants are configured, every request is checked: the registry
// must have let the tenant's credentials (or anonymous ones: a public
// image, shared by everyone) read the image's manifest by digest within
// the TTL. A success is remembered per (tenant, repository, digest); a
// refusal is not remembered at all. It is safe for concurrent use.
type accessGuard struct {
	farm    *keychain
	tenants map[string]*tenantKeychain
	ttl     time.Duration
	clock   clock.Clock
	head    func(ctx context.Context, ref Reference, kc authn.Keychain) (string, error)

	mu      sync.Mutex
	granted map[accessKey]time.Time // until when
}

// accessKey is one remembered success. tenant is "" and public true for
// an anonymous success, which serves every tenant.
type accessKey struct {
	repo, digest string
	tenant       string
	public       bool
}

func newAccessGuard(o Options, head func(context.Context, Reference, authn.Keychain) (string, error)) (*accessGuard, error) {
	farm, err := newKeychain(o.Registries, o.DockerConfig)
	if err != nil {
		return nil, err
	}
	g := &accessGuard{farm: farm, tenants: map[string]*tenantKeychain{}, ttl: o.AccessTTL, clock: o.Clock, head: head,
		granted: map[accessKey]time.Time{}}
	for t, c := range o.Tenants {
		k := newTenantKeychain(t, c.DockerConfig, farm, o.Logger)
		// A file that is wrong at start is a configuration error: stop.
		if _, err := k.current(); err != nil {
			return nil, fmt.Errorf("tenant %q: docker config %s: %w", t, c.DockerConfig, k.err)
		}
		g.tenants[t] = k
	}
	return g, nil
}

// enabled reports whether requests are checked at all: only with
// per-tenant credentials. Otherwise every tenant has the same
// credentials, and what one could pull every other could too.
func (g *accessGuard) enabled() bool { return len(g.tenants) > 0 }

// keychain returns the credentials tenant's requests use.
func (g *accessGuard) keychain(tenant string) authn.Keychain {
	if k := g.tenants[tenant]; k != nil {
		return k
	}
	return g.farm
}

// anonymous reports whether kc has no credentials for ref's registry:
// a success with it shows the image is public.
func (g *accessGuard) anonymous(kc authn.Keychain, ref Reference) bool {
	repo, err := name.NewRepository(ref.Registry+"/"+ref.Repository, name.WeakValidation)
	if err != nil {
		return false
	}
	a, err := kc.Resolve(repo)
	return err == nil && a == authn.Anonymous
}

func repoKey(ref Reference) string {
	reg := ref.Registry
	if reg == "docker.io" {
		reg = "index.docker.io"
	}
	return reg + "/" + ref.Repository
}

// allowed reports whether a remembered success lets tenant use digest
// under ref's repository now.
func (g *accessGuard) allowed(tenant string, ref Reference, digest string) bool {
	now := g.clock.Now()
	repo := repoKey(ref)
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, k := range []accessKey{{repo: repo, digest: digest, public: true}, {repo: repo, digest: digest, tenant: tenant}} {
		if until, ok := g.granted[k]; ok && now.Before(until) {
			return true
		}
	}
	return false
}

// grant remembers that the registry let kc (tenant's keychain) read
// digest under ref's repository.
func (g *accessGuard) grant(tenant string, kc authn.Keychain, ref Reference, digest string) {
	k := accessKey{repo: repoKey(ref), digest: digest, tenant: tenant}
	if g.anonymous(kc, ref) {
		k.tenant, k.public = "", true
	}
	now := g.clock.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.granted) >= 4096 {
		for k, until := range g.granted {
			if !now.Before(until) {
				delete(g.granted, k)
			}
		}
	}
	g.granted[k] = now.Add(g.ttl)
}

// check asks the registry whether tenant may read digest under ref's
// repository, with the tenant's credentials, and remembers a success.
func (g *accessGuard) check(ctx context.Context, tenant string, ref Reference, digest string) error {
	kc := g.keychain(tenant)
	at := Reference{Registry: ref.Registry, Repository: ref.Repository, Digest: digest}
	if _, err := g.head(ctx, at, kc); err != nil {
		return g.refusal(tenant, kc, ref, err)
	}
	g.grant(tenant, kc, ref, digest)
	return nil
}

// refusedStatus returns the HTTP status of a registry's refusal to let the
// caller read something (401, 403, or 404, which registries answer for
// private repositories to hide them), or 0 for any other error.
func refusedStatus(err error) int {
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusUnauthorized, http.StatusForbidden, http.StatusNotFound:
			return te.StatusCode
		}
	}
	return 0
}

// refusal explains a failed check without naming a secret or a host path.
func (g *accessGuard) refusal(tenant string, kc authn.Keychain, ref Reference, err error) error {
	code := refusedStatus(err)
	if code == 0 {
		var te *transport.Error
		if errors.As(err, &te) {
			return fmt.Errorf("cannot check tenant %q's access to the image at the registry: HTTP %d", tenant, te.StatusCode)
		}
		return fmt.Errorf("cannot check tenant %q's access to the image at the registry: %w", tenant, err)
	}
	if g.anonymous(kc, ref) {
		return fmt.Errorf("registry %s does not serve the image to tenant %q, which has no credentials for it (HTTP %d): %w",
			ref.Registry, tenant, code, ErrAccessDenied)
	}
	return fmt.Errorf("registry %s does not serve the image to tenant %q with its credentials (HTTP %d): %w",
		ref.Registry, tenant, code, ErrAccessDenied)
}

// logDecision records a check at debug level.
func logDecision(log *slog.Logger, tenant string, ref Reference, digest string, err error) {
	if err != nil {
		log.Debug("image access refused", "tenant", tenant, "ref", ref.String(), "digest", digest, "err", err)
		return
	}
	log.Debug("image access checked", "tenant", tenant, "ref", ref.String(), "digest", digest)
}
