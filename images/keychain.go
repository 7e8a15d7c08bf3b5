package images

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-containerregistry/pkg/authn"
)

// keychain finds credentials for a registry: the worker's own per-registry
// entries first, then the "auths" of a Docker config.json read once at
// start. It deliberately does not run credential helpers or read
// $HOME/.docker implicitly: what a worker can pull is decided by its config.
// These are the farm-wide credentials; a tenant's own (tenantKeychain) are
// asked first for that tenant's actions.
type keychain struct {
	byHost map[string]authn.AuthConfig
}

func newKeychain(registries map[string]Credentials, dockerConfig string) (*keychain, error) {
	k := &keychain{byHost: map[string]authn.AuthConfig{}}
	if dockerConfig != "" {
		b, err := os.ReadFile(dockerConfig)
		if err != nil {
			return nil, fmt.Errorf("docker config: %w", err)
		}
		if k.byHost, err = parseDockerConfig(b); err != nil {
			return nil, fmt.Errorf("docker config %s: %w", dockerConfig, err)
		}
	}
	for host, c := range registries {
		k.byHost[host] = authn.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}
	}
	return k, nil
}

// parseDockerConfig reads the "auths" of a Docker config.json, by registry
// host. Errors name the host, never a secret.
func parseDockerConfig(b []byte) (map[string]authn.AuthConfig, error) {
	var f struct {
		Auths map[string]struct {
			Auth          string `json:"auth"`
			Username      string `json:"username"`
			Password      string `json:"password"`
			IdentityToken string `json:"identitytoken"`
		} `json:"auths"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("not a Docker config.json: %w", err)
	}
	byHost := map[string]authn.AuthConfig{}
	for host, a := range f.Auths {
		c := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
		if a.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(a.Auth)
			if err != nil {
				return nil, fmt.Errorf("auth for %s is not base64", host)
			}
			user, pass, ok := strings.Cut(string(raw), ":")
			if !ok {
				return nil, fmt.Errorf("auth for %s is not user:password", host)
			}
			c.Username, c.Password = user, pass
		}
		byHost[configHost(host)] = c
	}
	return byHost, nil
}

// configHost turns a config.json key ("https://index.docker.io/v1/",
// "gcr.io") into a registry host.
func configHost(key string) string {
	key = strings.TrimPrefix(strings.TrimPrefix(key, "https://"), "http://")
	host, _, _ := strings.Cut(key, "/")
	if host == "docker.io" {
		return "index.docker.io"
	}
	return host
}

// Resolve implements authn.Keychain.
func (k *keychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if c, ok := k.byHost[r.RegistryStr()]; ok {
		return authn.FromConfig(c), nil
	}
	return authn.Anonymous, nil
}
