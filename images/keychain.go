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
		var f struct {
			Auths map[string]struct {
				Auth          string `json:"auth"`
				Username      string `json:"username"`
				Password      string `json:"password"`
				IdentityToken string `json:"identitytoken"`
			} `json:"auths"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("docker config %s: %w", dockerConfig, err)
		}
		for host, a := range f.Auths {
			c := authn.AuthConfig{Username: a.Username, Password: a.Password, IdentityToken: a.IdentityToken}
			if a.Auth != "" {
				raw, err := base64.StdEncoding.DecodeString(a.Auth)
				if err != nil {
					return nil, fmt.Errorf("docker config %s: auth for %s is not base64", dockerConfig, host)
				}
				user, pass, ok := strings.Cut(string(raw), ":")
				if !ok {
					return nil, fmt.Errorf("docker config %s: auth for %s is not user:password", dockerConfig, host)
				}
				c.Username, c.Password = user, pass
			}
			k.byHost[configHost(host)] = c
		}
	}
	for host, c := range registries {
		k.byHost[host] = authn.AuthConfig{Username: c.Username, Password: c.Password, IdentityToken: c.IdentityToken}
	}
	return k, nil
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
