package images

import (
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/google/go-containerregistry/pkg/authn"

	"github.com/paddock-build/paddock/internal/fileid"
)

// tenantKeychain is one tenant's registry credentials: the "auths" of a
// Docker config.json named by path in the runner's config, so the secret
// sits in a file only the runner reads, never in the scheduler's or a
// client's hands. A registry the file does not name gets the farm-wide
// credentials (or none). The file is read again when it changes, so
// credentials rotate without a restart. A file that cannot be read or
// parsed fails the tenant's pulls and access checks; it never widens what
// the tenant may use.
type tenantKeychain struct {
	tenant string
	path   string
	farm   *keychain
	log    *slog.Logger

	mu     sync.Mutex
	id     fileid.ID // of the file byHost was read from
	byHost map[string]authn.AuthConfig
	err    error // why the file as it is now cannot be used
}

func newTenantKeychain(tenant, path string, farm *keychain, log *slog.Logger) *tenantKeychain {
	return &tenantKeychain{tenant: tenant, path: path, farm: farm, log: log}
}

// Resolve implements authn.Keychain.
func (k *tenantKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	byHost, err := k.current()
	if err != nil {
		return nil, err
	}
	if c, ok := byHost[r.RegistryStr()]; ok {
		return authn.FromConfig(c), nil
	}
	return k.farm.Resolve(r)
}

// current returns the file's entries, reading it again if it changed.
func (k *tenantKeychain) current() (map[string]authn.AuthConfig, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	id, err := fileid.Stat(k.path)
	if err == nil && k.byHost != nil && id == k.id {
		return k.byHost, nil
	}
	if err == nil {
		var b []byte
		if b, err = os.ReadFile(k.path); err == nil {
			var byHost map[string]authn.AuthConfig
			if byHost, err = parseDockerConfig(b); err == nil {
				k.id, k.byHost, k.err = id, byHost, nil
				return byHost, nil
			}
		}
	}
	// The message goes back to the tenant's client: the details, with the
	// host path, only to the log.
	if k.err == nil || k.err.Error() != err.Error() {
		k.log.Error("tenant registry credentials unusable", "tenant", k.tenant, "file", k.path, "err", err)
	}
	k.byHost, k.err = nil, err
	return nil, fmt.Errorf("the registry credentials of tenant %q cannot be read on this worker (see the runner's log)", k.tenant)
}
