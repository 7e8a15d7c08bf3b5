package imagetest

import (
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// PrivateRegistry is go-containerregistry's in-process registry on
// loopback behind HTTP basic auth, as a hosted registry with private and
// public repositories behaves: repositories under "private/" answer only
// users Allow lists (401 otherwise), the others answer anyone, and a
// request with credentials the registry does not know is refused
// everywhere. Its /v2/ ping always asks for basic auth, so clients that
// have credentials send them.
type PrivateRegistry struct {
	Host string

	mu        sync.Mutex
	users     map[string]string // user → password
	manifests int               // GET and HEAD of manifests
	blobGets  int
}

// pusher is the user Push writes with.
const pusher = "imagetest-pusher"

// ServePrivate starts a PrivateRegistry for the rest of the test.
func ServePrivate(t testing.TB) *PrivateRegistry {
	t.Helper()
	r := &PrivateRegistry{users: map[string]string{pusher: "push"}}
	reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !r.admit(req) {
			w.Header().Set("WWW-Authenticate", `Basic realm="imagetest"`)
			http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
			return
		}
		reg.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// admit decides a request and counts what it reads.
func (r *PrivateRegistry) admit(req *http.Request) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := req.URL.Path
	if p == "/v2/" || p == "/v2" {
		return false // the ping: always a basic-auth challenge
	}
	user, pass, hasAuth := req.BasicAuth()
	known := hasAuth && r.users[user] == pass && pass != ""
	if hasAuth && !known {
		return false
	}
	if strings.HasPrefix(p, "/v2/private/") && !known {
		return false
	}
	switch {
	case strings.Contains(p, "/manifests/") && req.Method != http.MethodPut:
		r.manifests++
	case strings.Contains(p, "/blobs/sha256:") && req.Method == http.MethodGet:
		r.blobGets++
	}
	return true
}

// Allow lets user in with pass, to every repository.
func (r *PrivateRegistry) Allow(user, pass string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.users[user] = pass
}

// Revoke forgets user.
func (r *PrivateRegistry) Revoke(user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.users, user)
}

// Reads returns how many manifest reads (GET or HEAD) and blob downloads
// the registry answered.
func (r *PrivateRegistry) Reads() (manifests, blobGets int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.manifests, r.blobGets
}

// Push writes img to repoTag ("private/app:1" or "public/tools:1") and
// returns the container-image value naming it by digest, as
// docker://HOST/REPO@sha256:….
func (r *PrivateRegistry) Push(t testing.TB, repoTag string, img v1.Image) string {
	t.Helper()
	ref, err := name.ParseReference(r.Host + "/" + repoTag)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithAuth(&authn.Basic{Username: pusher, Password: "push"})); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return "docker://" + ref.Context().Name() + "@" + d.String()
}

// DockerConfig returns a Docker config.json granting user:pass on the
// registry.
func (r *PrivateRegistry) DockerConfig(user, pass string) string {
	return `{"auths":{"` + r.Host + `":{"username":"` + user + `","password":"` + pass + `"}}}`
}
