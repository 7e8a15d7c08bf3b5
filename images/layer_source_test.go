package images

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// internalService stands for a service inside the workers' network: it
// counts the requests it gets and answers each with a secret.
func internalService(t *testing.T) (*httptest.Server, *atomic.Int32) {
	var hits atomic.Int32
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		_, _ = io.WriteString(w, "ROLE_TOKEN=intern4l-9f3c2e7a1b\n") // a client gone is no failure of the test
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

// TestForeignLayersAreNotFetched: an image whose manifest gives a layer
// URLs besides its registry is refused before any layer is fetched, and
// nothing is asked of those URLs: go-containerregistry fetched them with
// the runner's transport, past images.allowed_registries.
func TestForeignLayersAreNotFetched(t *testing.T) {
	internal, hits := internalService(t)
	r := newTestRegistry(t)
	layer := layerOf(t, compression.GZip, file("f", "content", 0o644))
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, URLs: []string{internal.URL + "/latest/secret"}})
	if err == nil {
		img, err = mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers", DiffIDs: diffIDsOf(t, layer)}})
	}
	if err != nil {
		t.Fatal(err)
	}
	r.push(t, "foreign:1", img)
	c := newTestCache(t, t.TempDir(), r, func(o *Options) { o.AllowedRegistries = []string{r.Host} })
	_, err = c.Rootfs(context.Background(), r.ref(t, "foreign:1"))
	if !errors.Is(err, ErrForeignLayer) {
		t.Fatalf("pull of an image with a foreign layer: %v, want ErrForeignLayer", err)
	}
	if strings.Contains(err.Error(), internal.URL) {
		t.Errorf("the error %q quotes the foreign URL", err)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the foreign URL was asked %d times", n)
	}
}

func diffIDsOf(t *testing.T, layers ...v1.Layer) []v1.Hash {
	var out []v1.Hash
	for _, l := range layers {
		h, err := l.DiffID()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// TestLayerReadFailuresAreMarked: a registry that redirects a layer, or
// the image's config, to a service that answers with other bytes fails
// the pull with a LayerReadError, whose text the runner never passes to a
// client: the checks of go-containerregistry quote the size and digest of
// what they read, which read that service's answer out, one byte per
// action (a probe read a token out of the config's path, whose error was
// not marked).
func TestLayerReadFailuresAreMarked(t *testing.T) {
	for _, blob := range []string{"layer", "config"} {
		t.Run(blob, func(t *testing.T) {
			internal, hits := internalService(t)
			reg := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
			var redirected atomic.Value
			redirected.Store("")
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if req.Method == http.MethodGet && req.URL.Path == redirected.Load().(string) {
					http.Redirect(w, req, internal.URL+"/latest/secret", http.StatusTemporaryRedirect)
					return
				}
				reg.ServeHTTP(w, req)
			}))
			t.Cleanup(srv.Close)
			host := strings.TrimPrefix(srv.URL, "http://")
			layer := layerOf(t, compression.GZip, file("f", strings.Repeat("content ", 100), 0o644))
			img := imageOf(t, "linux/amd64", v1.Config{}, layer)
			ref, err := name.ParseReference(host + "/redirected:1")
			if err == nil {
				err = remote.Write(ref, img)
			}
			if err != nil {
				t.Fatal(err)
			}
			d, err := layer.Digest()
			if blob == "config" {
				d, err = img.ConfigName()
			}
			if err != nil {
				t.Fatal(err)
			}
			redirected.Store("/v2/redirected/blobs/" + d.String())
			c := newTestCache(t, t.TempDir(), nil, func(o *Options) {
				o.Insecure = []string{host, strings.TrimPrefix(internal.URL, "http://")}
			})
			parsed, _, err := ParseReference("docker://" + host + "/redirected:1")
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.Rootfs(context.Background(), parsed)
			var lre *LayerReadError
			if !errors.As(err, &lre) {
				t.Fatalf("pull of a %s redirected to other bytes: %v, want a LayerReadError", blob, err)
			}
			if hits.Load() == 0 {
				t.Fatal("the redirect was not followed: the test shows nothing")
			}
		})
	}
}
