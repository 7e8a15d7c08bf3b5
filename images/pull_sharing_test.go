package images

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// waitUntil polls cond until it holds, failing the test after 20 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll
	}
}

// workDirs lists the cache's work directories in progress (tmp/work-*).
func workDirs(c *Cache) []string {
	m, _ := filepath.Glob(filepath.Join(c.store.tmp(), "work-*"))
	return m
}

// layerBlob matches the blob path of img's layer i.
func layerBlob(t *testing.T, img v1.Image, i int) func(path string) bool {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	d, err := layers[i].Digest()
	if err != nil {
		t.Fatal(err)
	}
	return func(p string) bool { return strings.HasSuffix(p, "/blobs/"+d.String()) }
}

// quiet discards the cache's log: work a test abandons may log after the
// test has ended, which the test's own log does not allow.
func quiet(o *Options) { o.Logger = slog.New(slog.DiscardHandler) }

// waiters is how many callers wait for the run of key.
func (g *flightGroup) waiters(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.flights[key]
	if f == nil {
		return 0
	}
	f.life.mu.Lock()
	defer f.life.mu.Unlock()
	return f.life.holds
}

// An attacker who knows a victim's image (its manifest bytes, or only its
// layers' digests and diffIDs, all public) serves it from a registry of
// its own and stalls the download. The victim's pull from its own
// registry must not wait on the attacker's download: downloads are
// shared only between pulls naming the same repository.
func TestAnotherOriginsStalledDownloadIsNotJoined(t *testing.T) {
	img := busyboxImage(t, "victim")
	sameLayers, err := mutate.Config(img, v1.Config{Env: []string{"ATTACKER=1"}})
	if err != nil {
		t.Fatal(err)
	}
	for name, attackerImage := range map[string]v1.Image{
		"the same manifest":        img,
		"another manifest, layers": sameLayers,
	} {
		t.Run(name, func(t *testing.T) {
			victim, attacker := newTestRegistry(t), newTestRegistry(t)
			victim.push(t, "team/app:1", img)
			attacker.push(t, "evil/app:1", attackerImage)
			stalled, release := attacker.stallBlobsWhere(layerBlob(t, img, 0), true)
			defer release()
			c := newTestCache(t, t.TempDir(), victim, func(o *Options) {
				o.Insecure = append(o.Insecure, attacker.Host)
				quiet(o)
			})

			attackerCtx, cancelAttacker := context.WithCancel(context.Background())
			defer cancelAttacker()
			attackerDone := make(chan error, 1)
			go func() {
				_, err := c.Rootfs(attackerCtx, attacker.ref(t, "evil/app:1"))
				attackerDone <- err
			}()
			<-stalled

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rf, err := c.Rootfs(ctx, victim.ref(t, "team/app:1"))
			if err != nil {
				t.Fatalf("the victim's pull, while the attacker's download of the same content stalls: %v", err)
			}
			defer rf.Release()
			checkBusyboxRootfs(t, rf, "victim")
			select {
			case err := <-attackerDone:
				t.Fatalf("the attacker's stalled pull ended: %v", err)
			default:
			}
			cancelAttacker()
			if err := <-attackerDone; !errors.Is(err, context.Canceled) {
				t.Fatalf("the attacker's pull: %v", err)
			}
			waitUntil(t, "the attacker's download ends", func() bool { return len(workDirs(c)) == 0 })
		})
	}
}

// A download nobody waits for any more is cancelled, at once, and its
// work directory removed: whether its one caller's deadline passed, or
// every caller sharing it gave up. Before, it went on for
// Options.PullTimeout (30 minutes) with its connection and its
// half-unpacked layer.
func TestAbandonedDownloadIsCancelled(t *testing.T) {
	for _, callers := range []int{1, 3} {
		r := newTestRegistry(t)
		img := busyboxImage(t, "abandoned")
		r.push(t, "bb:1", img)
		stalled, release := r.stallBlobsWhere(layerBlob(t, img, 0), true)
		defer release()
		c := newTestCache(t, t.TempDir(), r, quiet)
		ctx, cancel := context.WithCancel(context.Background())
		errs := make(chan error, callers)
		for range callers {
			go func() {
				_, err := c.Rootfs(ctx, r.ref(t, "bb:1"))
				errs <- err
			}()
		}
		<-stalled
		if len(workDirs(c)) == 0 {
			t.Fatal("no work directory while the layer downloads")
		}
		cancel()
		for range callers {
			if err := <-errs; !errors.Is(err, context.Canceled) {
				t.Fatalf("%d callers: a caller got %v, want context.Canceled", callers, err)
			}
		}
		waitUntil(t, "the registry sees the download end", func() bool { return r.abandonedRequests() > 0 })
		waitUntil(t, "the work directory is removed", func() bool { return len(workDirs(c)) == 0 })
	}
}

// A caller that gives up does not cancel the download others are still
// waiting for: they get the image, downloaded once.
func TestCancelledCallerDoesNotCancelSharedPull(t *testing.T) {
	r := newTestRegistry(t)
	r.push(t, "bb:1", busyboxImage(t, "cancel"))
	base, _ := r.counts()
	stalled, release := r.stallBlobs()
	c := newTestCache(t, t.TempDir(), r, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancelled, stays := make(chan error, 1), make(chan error, 1)
	go func() {
		_, err := c.Rootfs(ctx, r.ref(t, "bb:1"))
		cancelled <- err
	}()
	<-stalled
	go func() {
		rf, err := c.Rootfs(context.Background(), r.ref(t, "bb:1"))
		if err == nil {
			checkBusyboxRootfs(t, rf, "cancel")
			rf.Release()
		}
		stays <- err
	}()
	// The second caller has joined once the first no longer holds the
	// download alone: cancelling the first then leaves it running.
	waitUntil(t, "the second caller joins", func() bool { return c.flights.waiters("ref "+r.ref(t, "bb:1").String()) == 2 })
	cancel()
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled caller: %v", err)
	}
	release()
	if err := <-stays; err != nil {
		t.Fatalf("the caller still waiting: %v", err)
	}
	blobs, _ := r.counts()
	for p, n := range blobs {
		if n-base[p] > 1 {
			t.Errorf("blob %s downloaded %d times", p, n-base[p])
		}
	}
	if n := r.abandonedRequests(); n != 0 {
		t.Errorf("%d downloads were cancelled", n)
	}
}

// A registry that sends a blob's headers and then nothing fails the pull
// after Options.ReadIdleTimeout, saying so, rather than hold it until the
// caller's deadline (or, without one, for ever).
func TestStalledBodyTimesOut(t *testing.T) {
	r := newTestRegistry(t)
	img := busyboxImage(t, "idle")
	r.push(t, "bb:1", img)
	_, release := r.stallBlobsWhere(layerBlob(t, img, 0), true)
	defer release()
	c := newTestCache(t, t.TempDir(), r, func(o *Options) {
		o.ReadIdleTimeout = 200 * time.Millisecond
		quiet(o)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := c.Rootfs(ctx, r.ref(t, "bb:1"))
	if !errors.Is(err, ErrRegistryStalled) || ctx.Err() != nil {
		t.Fatalf("got %v; want ErrRegistryStalled well before the caller's deadline", err)
	}
	waitUntil(t, "the work directory is removed", func() bool { return len(workDirs(c)) == 0 })
}
