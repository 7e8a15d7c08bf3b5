package images

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/compression"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paddock-build/paddock/images/imagetest"
	"github.com/paddock-build/paddock/internal/clock"
)

// privateSetup is a PrivateRegistry with one private and one public
// image, and a cache whose tenants a and b have credential files (b's
// starts empty).
type privateSetup struct {
	reg             *imagetest.PrivateRegistry
	private, public Reference
	cache           *Cache
	clock           *clock.Fake
	bFile           string
}

func newPrivateSetup(t *testing.T) *privateSetup {
	t.Helper()
	s := &privateSetup{reg: imagetest.ServePrivate(t), clock: clock.NewFake(time.Unix(1_800_000_000, 0))}
	s.reg.Allow("alice", "a-secret")
	small := func(marker string) v1.Image {
		return imageOf(t, "linux/amd64", v1.Config{}, layerOf(t, compression.GZip, dir("etc"), file("etc/marker", marker, 0o644)))
	}
	s.private = mustRef(t, s.reg.Push(t, "private/app:1", small("private")))
	s.public = mustRef(t, s.reg.Push(t, "public/tools:1", small("public")))
	dir := t.TempDir()
	aFile := filepath.Join(dir, "a.json")
	s.bFile = filepath.Join(dir, "b.json")
	writeFile(t, aFile, s.reg.DockerConfig("alice", "a-secret"))
	writeFile(t, s.bFile, `{"auths":{}}`)
	s.cache = newTestCache(t, t.TempDir(), nil, func(o *Options) {
		o.Insecure = []string{s.reg.Host}
		o.Clock = s.clock
		o.AccessTTL = time.Minute
		o.Tenants = map[string]TenantCredentials{"a": {DockerConfig: aFile}, "b": {DockerConfig: s.bFile}}
	})
	return s
}

func mustRef(t testing.TB, v string) Reference {
	t.Helper()
	ref, none, err := ParseReference(v)
	if err != nil || none {
		t.Fatalf("ParseReference(%s): %v", v, err)
	}
	return ref
}

func writeFile(t testing.TB, p, body string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// use asks for ref as tenant and releases the hold at once.
func (s *privateSetup) use(ref Reference, tenant string) error {
	rf, err := s.cache.RootfsFor(context.Background(), ref, tenant)
	if err == nil {
		rf.Release()
	}
	return err
}

func TestCachedPrivateImageNeedsTheTenantsOwnCredentials(t *testing.T) {
	s := newPrivateSetup(t)
	if err := s.use(s.private, "a"); err != nil {
		t.Fatalf("tenant a, with credentials: %v", err)
	}
	_, blobsAfterPull := s.reg.Reads()

	// The image is cached, but b has no credentials for the registry.
	err := s.use(s.private, "b")
	if !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("tenant b without credentials: want ErrAccessDenied, got %v", err)
	}
	if !strings.Contains(err.Error(), `tenant "b"`) || strings.Contains(err.Error(), "a-secret") {
		t.Errorf("refusal should name the tenant and no secret: %v", err)
	}
	// A tenant the config does not list gets the farm-wide credentials:
	// none here.
	if err := s.use(s.private, "c"); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("unlisted tenant: want ErrAccessDenied, got %v", err)
	}
	// Wrong credentials are refused too.
	writeFile(t, s.bFile, s.reg.DockerConfig("bob", "guess"))
	if err := s.use(s.private, "b"); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("tenant b with wrong credentials: want ErrAccessDenied, got %v", err)
	}
	// b gets its own account: the refusals were not remembered, and the
	// changed file is read again.
	s.reg.Allow("bob", "b-secret")
	writeFile(t, s.bFile, s.reg.DockerConfig("bob", "b-secret"))
	if err := s.use(s.private, "b"); err != nil {
		t.Fatalf("tenant b with its own credentials: %v", err)
	}
	if _, blobs := s.reg.Reads(); blobs != blobsAfterPull {
		t.Errorf("b's use downloaded %d blobs; the cached image should serve it", blobs-blobsAfterPull)
	}
}

func TestAccessChecksAreRememberedForTheTTLOnly(t *testing.T) {
	s := newPrivateSetup(t)
	if err := s.use(s.private, "a"); err != nil {
		t.Fatal(err)
	}
	manifests, _ := s.reg.Reads()
	if err := s.use(s.private, "a"); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.reg.Reads(); m != manifests {
		t.Errorf("a second use within the TTL asked the registry %d times", m-manifests)
	}
	// The registry withdraws a's access: within the TTL the cache does not
	// know yet; past it, a is refused.
	s.reg.Revoke("alice")
	if err := s.use(s.private, "a"); err != nil {
		t.Fatalf("within the TTL: %v", err)
	}
	s.clock.Advance(time.Minute)
	if err := s.use(s.private, "a"); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("past the TTL, with access revoked: want ErrAccessDenied, got %v", err)
	}
	// Restored: the refusal is not remembered.
	s.reg.Allow("alice", "a-secret")
	if err := s.use(s.private, "a"); err != nil {
		t.Fatalf("access restored: %v", err)
	}
}

func TestPublicImagesAreShared(t *testing.T) {
	s := newPrivateSetup(t)
	// a pulls with its credentials; one anonymous request at the pull shows
	// the image is public.
	if err := s.use(s.public, "a"); err != nil {
		t.Fatal(err)
	}
	manifests, blobs := s.reg.Reads()
	for _, tenant := range []string{"b", "c", ""} {
		if err := s.use(s.public, tenant); err != nil {
			t.Errorf("tenant %q: public image refused: %v", tenant, err)
		}
	}
	if m, b := s.reg.Reads(); m != manifests || b != blobs {
		t.Errorf("other tenants' uses of a public image asked the registry %d times", m-manifests+b-blobs)
	}
	// A tag resolved by a's pull serves b too, checked by digest.
	byTag := mustRef(t, "docker://"+s.reg.Host+"/private/app:1")
	if err := s.use(byTag, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.use(byTag, "b"); !errors.Is(err, ErrAccessDenied) {
		t.Errorf("tenant b, private image by tag: want ErrAccessDenied, got %v", err)
	}
}

func TestUnreadableTenantCredentialsFailWithoutNamingTheFile(t *testing.T) {
	s := newPrivateSetup(t)
	if err := s.use(s.private, "a"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, s.bFile, "{not json")
	err := s.use(s.private, "b")
	if err == nil || errors.Is(err, ErrAccessDenied) {
		t.Fatalf("want an error that is not a registry refusal, got %v", err)
	}
	if strings.Contains(err.Error(), s.bFile) || !strings.Contains(err.Error(), `tenant "b"`) {
		t.Errorf("error should name the tenant, not the host path: %v", err)
	}
}

func TestWithoutTenantsNothingIsChecked(t *testing.T) {
	reg := imagetest.ServePrivate(t)
	ref := mustRef(t, reg.Push(t, "public/tools:1", imageOf(t, "linux/amd64", v1.Config{},
		layerOf(t, compression.GZip, file("marker", "x", 0o644)))))
	c := newTestCache(t, t.TempDir(), nil, func(o *Options) { o.Insecure = []string{reg.Host} })
	before, _ := reg.Reads() // the push's
	for _, tenant := range []string{"a", "b"} {
		rf, err := c.RootfsFor(context.Background(), ref, tenant)
		if err != nil {
			t.Fatal(err)
		}
		rf.Release()
	}
	if m, _ := reg.Reads(); m-before != 1 {
		t.Errorf("without tenants, want the one manifest request of the pull, got %d", m-before)
	}
}

// TestRefusedPullIsAccessDenied: a tenant whose pull the registry refuses
// gets the same answer as for a cached image, and its refusal neither
// uses nor refreshes what a tag meant for another tenant.
func TestRefusedPullIsAccessDenied(t *testing.T) {
	s := newPrivateSetup(t)
	reg := prometheus.NewRegistry()
	s.cache = newTestCache(t, t.TempDir(), nil, func(o *Options) {
		o.Insecure = []string{s.reg.Host}
		o.Clock = s.clock
		o.AccessTTL = time.Minute
		o.RefreshTags = time.Minute
		o.Metrics = reg
		o.Tenants = map[string]TenantCredentials{"a": {DockerConfig: writeTemp(t, s.reg.DockerConfig("alice", "a-secret"))},
			"b": {DockerConfig: s.bFile}}
	})
	if err := s.use(s.private, "b"); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("tenant b pulling the private image: want ErrAccessDenied, got %v", err)
	}
	byTag := mustRef(t, "docker://"+s.reg.Host+"/private/app:1")
	if err := s.use(byTag, "a"); err != nil {
		t.Fatal(err)
	}
	s.clock.Advance(time.Minute) // the tag is due for a refresh
	if err := s.use(byTag, "b"); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("tenant b, stale tag: want ErrAccessDenied, got %v", err)
	}
	if got := metricValue(t, reg, "paddock_images_access_checks_total", "result", "denied"); got != 0 {
		t.Errorf("refused pulls counted as %v access checks", got)
	}
	s.clock.Advance(30 * time.Second)
	if err := s.use(s.private, "b"); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("tenant b, cached image: want ErrAccessDenied, got %v", err)
	}
	if got := metricValue(t, reg, "paddock_images_access_checks_total", "result", "denied"); got != 1 {
		t.Errorf("denied access checks = %v, want 1", got)
	}
}

func writeTemp(t testing.TB, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.json")
	writeFile(t, p, body)
	return p
}

// BenchmarkRootfsForTenant measures RootfsFor+Release of a cached private
// image by digest: without tenants, and with tenants configured and the
// tenant's access check remembered (the per-action cost of the check
// between registry requests, one per tenant and image per AccessTTL).
func BenchmarkRootfsForTenant(b *testing.B) {
	reg := imagetest.ServePrivate(b)
	reg.Allow("alice", "a-secret")
	ref := mustRef(b, reg.Push(b, "private/app:1", imageOf(b, "linux/amd64", v1.Config{},
		layerOf(b, compression.GZip, file("marker", "x", 0o644)))))
	creds := writeTemp(b, reg.DockerConfig("alice", "a-secret"))
	for name, tenants := range map[string]map[string]TenantCredentials{
		"no tenants":        nil,
		"tenant remembered": {"a": {DockerConfig: creds}},
	} {
		b.Run(name, func(b *testing.B) {
			c, err := New(Options{Dir: b.TempDir(), Insecure: []string{reg.Host}, Registries: map[string]Credentials{reg.Host: {Username: "alice", Password: "a-secret"}},
				Tenants: tenants, AccessTTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { _ = c.Close() }() // teardown: nothing uses the cache after it
			rf, err := c.RootfsFor(context.Background(), ref, "a")
			if err != nil {
				b.Fatal(err)
			}
			rf.Release()
			before, _ := reg.Reads()
			for b.Loop() {
				rf, err := c.RootfsFor(context.Background(), ref, "a")
				if err != nil {
					b.Fatal(err)
				}
				rf.Release()
			}
			if m, _ := reg.Reads(); m != before {
				b.Fatalf("a remembered check asked the registry %d times", m-before)
			}
		})
	}
}
