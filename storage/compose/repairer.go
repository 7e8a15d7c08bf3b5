package compose

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// repairTimeout bounds one repair: a copy stuck on a half-dead backend
// must not hold a slot for ever.
const repairTimeout = 10 * time.Minute

// Repairer runs the background copies that bring mirrors back in step.
// At most a fixed number run at once and a repair already running is not
// started twice; when all slots are busy a repair is dropped (and counted),
// since the next read or lookup of the blob asks for it again. Repairs are
// not tied to the request that found the gap: they run until done or
// Close. Safe for concurrent use; one Repairer may serve several mirrors.
type Repairer struct {
	ctx    context.Context
	cancel context.CancelFunc
	slots  chan struct{}
	log    *slog.Logger
	wg     sync.WaitGroup

	mu      sync.Mutex
	running map[string]bool

	done, failed, dropped atomic.Int64
}

// NewRepairer returns a Repairer running at most concurrency repairs.
func NewRepairer(concurrency int, logger *slog.Logger) *Repairer {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Repairer{ctx: ctx, cancel: cancel, slots: make(chan struct{}, max(concurrency, 1)), log: logger, running: map[string]bool{}}
}

// Start runs fn in the background under key unless a repair of key is
// running, all slots are busy, or the Repairer is closed.
func (r *Repairer) Start(key string, fn func(ctx context.Context) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running[key] || r.ctx.Err() != nil {
		return
	}
	select {
	case r.slots <- struct{}{}:
	default:
		r.dropped.Add(1)
		return
	}
	r.running[key] = true
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		ctx, cancel := context.WithTimeout(r.ctx, repairTimeout)
		err := fn(ctx)
		cancel()
		if err != nil {
			r.failed.Add(1)
			r.log.Warn("mirror repair failed", "repair", key, "error", err)
		} else {
			r.done.Add(1)
			r.log.Info("mirror repaired", "repair", key)
		}
		r.mu.Lock()
		delete(r.running, key)
		r.mu.Unlock()
		<-r.slots
	}()
}

// Stats returns how many repairs succeeded, failed, and were dropped
// because all slots were busy.
func (r *Repairer) Stats() (done, failed, dropped int64) {
	return r.done.Load(), r.failed.Load(), r.dropped.Load()
}

// Close cancels running repairs and waits for them.
func (r *Repairer) Close() {
	r.mu.Lock() // a Start either has added to wg or sees the cancel
	r.cancel()
	r.mu.Unlock()
	r.wg.Wait()
}
