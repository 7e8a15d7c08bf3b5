package images

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/compression"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/paddock-build/paddock/images/imagetest"
)

// rawManifest is a manifest pushed as bytes, without its blobs, as a
// registry an attacker runs may serve one.
type rawManifest struct {
	b  []byte
	mt types.MediaType
}

func (m rawManifest) RawManifest() ([]byte, error)        { return m.b, nil }
func (m rawManifest) MediaType() (types.MediaType, error) { return m.mt, nil }

// TestAnotherRegistryNamingACachedDigestIsNotTrusted: tenant b runs its
// own registry, which answers for the digest of a's cached private image
// (it has the manifest bytes, not the layers). Naming that registry must
// not hand b the image: content is shared across repositories only once
// the repository named has served it.
func TestAnotherRegistryNamingACachedDigestIsNotTrusted(t *testing.T) {
	s := newPrivateSetup(t)
	if err := s.use(s.private, "a"); err != nil {
		t.Fatal(err)
	}
	evil := imagetest.Serve(t)
	raw, err := remote.Get(mustName(t, strings.TrimPrefix(s.private.String(), "docker://")),
		remote.WithAuth(basicAuth("alice", "a-secret")))
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Put(mustName(t, evil+"/evil/copy@"+s.private.Digest), rawManifest{raw.Manifest, raw.MediaType}); err != nil {
		t.Fatal(err)
	}
	s.cache.opts.Insecure = append(s.cache.opts.Insecure, evil)
	s.cache.puller.insecure[evil] = true
	ref := mustRef(t, "docker://"+evil+"/evil/copy@"+s.private.Digest)
	if err := s.use(ref, "b"); err == nil {
		t.Fatal("tenant b got a's private image by naming its own registry with the digest")
	}
}

// TestALayerIsReusedOnlyFromARepositoryThatServedIt: tenant b pushes an
// image to its own registry whose config claims the diffID of a's private
// layer, with other bytes as the layer blob. The cached layer must not be
// used for it.
func TestALayerIsReusedOnlyFromARepositoryThatServedIt(t *testing.T) {
	s := newPrivateSetup(t)
	rf, err := s.cache.RootfsFor(context.Background(), s.private, "a")
	if err != nil {
		t.Fatal(err)
	}
	rf.Release()
	img, _ := s.cache.images.Peek(s.private.Digest)
	secretDiffID := img.rec.Layers[0]

	evil := imagetest.Serve(t)
	forged := imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, file("etc/marker", "not a's", 0o644)))
	cf, err := forged.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[0], err = v1.NewHash(secretDiffID)
	if err != nil {
		t.Fatal(err)
	}
	if forged, err = mutate.ConfigFile(forged, cf); err != nil {
		t.Fatal(err)
	}
	s.cache.puller.insecure[evil] = true
	ref := mustRef(t, imagetest.Push(t, evil, "evil/forged:1", forged))
	rf, err = s.cache.RootfsFor(context.Background(), ref, "b")
	if err == nil {
		rf.Release()
		t.Fatal("tenant b's forged image was assembled from a's cached private layer")
	}
	// Its text quotes the digest of what b's registry served, which, had
	// it redirected the layer to an internal URL, read that URL's answer
	// out one byte per action: a LayerReadError, which the runner never
	// passes to a client.
	var lre *LayerReadError
	if !errors.As(err, &lre) {
		t.Fatalf("the refusal is not a LayerReadError: %v", err)
	}
}

func mustName(t testing.TB, s string) name.Reference {
	t.Helper()
	r, err := name.ParseReference(s, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func basicAuth(user, pass string) authn.Authenticator {
	return &authn.Basic{Username: user, Password: pass}
}

// TestSameContentFromAnotherRepository: an image cached from a's private
// repository, pushed also to a public one, serves tenant b once the public
// repository has served every layer (hashed, not unpacked again); the
// origins survive a restart, so nothing is downloaded again for either.
func TestSameContentFromAnotherRepository(t *testing.T) {
	s := newPrivateSetup(t)
	if err := s.use(s.private, "a"); err != nil {
		t.Fatal(err)
	}
	img, _ := s.cache.images.Peek(s.private.Digest)
	layerDir := s.cache.store.layerDir(img.rec.Layers[0])
	before, err := os.Stat(layerDir)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := remote.Image(mustName(t, strings.TrimPrefix(s.private.String(), "docker://")), remote.WithAuth(basicAuth("alice", "a-secret")))
	if err != nil {
		t.Fatal(err)
	}
	mirror := mustRef(t, s.reg.Push(t, "public/mirror:1", raw))
	if mirror.Digest != s.private.Digest {
		t.Fatalf("the mirror has digest %s, want %s", mirror.Digest, s.private.Digest)
	}
	if err := s.use(mirror, "b"); err != nil {
		t.Fatalf("tenant b, the same image from a public repository: %v", err)
	}
	if after, err := os.Stat(layerDir); err != nil || !os.SameFile(before, after) {
		t.Errorf("the layer was unpacked again (%v)", err)
	}
	if err := s.use(s.private, "b"); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("tenant b, by the private name: want ErrAccessDenied, got %v", err)
	}

	dir := s.cache.opts.Dir
	o := s.cache.opts
	if err := s.cache.Close(); err != nil {
		t.Fatalf("closing the cache before the restart: %v", err)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() }) // teardown: nothing uses the cache after it
	_, blobs := s.reg.Reads()
	for _, u := range []struct {
		ref    Reference
		tenant string
	}{{s.private, "a"}, {mirror, "b"}} {
		rf, err := c.RootfsFor(context.Background(), u.ref, u.tenant)
		if err != nil {
			t.Fatalf("after a restart, tenant %s on %s: %v", u.tenant, u.ref, err)
		}
		rf.Release()
	}
	if _, after := s.reg.Reads(); after != blobs {
		t.Errorf("after a restart %d blobs were downloaded again in %s", after-blobs, dir)
	}
}
