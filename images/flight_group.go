package images

import (
	"context"
	"sync"
	"time"
)

// flightGroup collapses concurrent requests for one piece of work (a
// reference's pull, an image's or a layer's download, an access check)
// into one run, as singleflight does, with two differences that keep one
// caller's work from deciding another's:
//
//   - The work runs on a lifetime held by its waiting callers: it is
//     cancelled once every one of them has gone (its own context ended),
//     and a caller that goes gets its own context's error at once. A
//     caller arriving after that starts the work afresh.
//   - The key is the caller's to choose, and a download's key names the
//     repository it comes from as well as the digest (Cache.ensureImage,
//     Cache.ensureLayer): pullers naming different repositories never
//     wait on each other's downloads, however the digests compare.
//
// Safe for concurrent use.
type flightGroup struct {
	limit time.Duration // bounds each run (Options.PullTimeout); 0: none

	mu      sync.Mutex
	flights map[string]*flight
	running sync.WaitGroup // the runs' goroutines, for close
}

// flight is one run of the work and what it returned.
type flight struct {
	life *lifetime // held by each waiting caller
	done chan struct{}
	val  any
	err  error
}

func newFlightGroup(limit time.Duration) *flightGroup {
	return &flightGroup{limit: limit, flights: map[string]*flight{}}
}

// do runs fn for key unless a run is under way, and waits for its result
// or for ctx to end. fn gets the run's lifetime as its context. src, if
// not nil, is the lifetime of what fn reads from (a fetched image's
// requests are bound to it, see imageSource): the run holds it for as
// long as it lives, so that it outlives the caller that fetched the image
// while others wait for the run. do fails at once if src has ended.
func (g *flightGroup) do(ctx context.Context, key string, src *lifetime, fn func(ctx context.Context) (any, error)) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	g.mu.Lock()
	f := g.flights[key]
	if f == nil {
		f = &flight{life: newLifetime(ctx, g.limit), done: make(chan struct{})}
		if src != nil && !src.holdWhile(f.life) {
			g.mu.Unlock()
			f.life.cancel()
			return nil, context.Canceled // every caller of the fetch that made src has gone
		}
		g.flights[key] = f
		g.running.Add(1)
		go g.run(key, f, fn)
	}
	// A flight in the map has a waiter (leave forgets it with its last),
	// so its lifetime has not ended and the hold cannot fail.
	f.life.hold()
	g.mu.Unlock()
	select {
	case <-f.done:
		g.leave(key, f)
		return f.val, f.err
	case <-ctx.Done():
		g.leave(key, f)
		return nil, ctx.Err()
	}
}

func (g *flightGroup) run(key string, f *flight, fn func(ctx context.Context) (any, error)) {
	defer g.running.Done()
	f.val, f.err = fn(f.life)
	g.forget(key, f)
	close(f.done)
}

// leave drops a waiter's hold; the last one cancels the run and forgets
// it, so that the next caller starts afresh rather than join it.
func (g *flightGroup) leave(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f.life.release() && g.flights[key] == f {
		delete(g.flights, key)
	}
}

func (g *flightGroup) forget(key string, f *flight) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.flights[key] == f {
		delete(g.flights, key)
	}
}

// close cancels every run and waits for their goroutines to end, so that
// none writes into the cache's directory after it is closed (a layer
// still unpacking for a pull whose callers had gone wrote on after the
// cache was closed and its directory removed).
func (g *flightGroup) close() {
	g.mu.Lock()
	for _, f := range g.flights {
		f.life.cancel()
	}
	g.mu.Unlock()
	g.running.Wait()
}
