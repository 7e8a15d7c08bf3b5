package images

import (
	"errors"
	"log/slog"
	"os"
	"sync"
)

// remover deletes evicted trees in the background. Eviction happens in
// whichever call goes over the bound, often an unrelated action's setup,
// and deleting a tree of many thousands of entries there took an action
// that ran for 13 ms 52 to 161 s. The trees are already moved aside
// (store.discard) when they are queued here, so nothing sees them;
// a crash leaves them in the store's tmp directory, which opening the
// store clears.
type remover struct {
	remove func(string) error // os.RemoveAll; tests block it
	log    *slog.Logger

	mu     sync.Mutex
	queue  []string
	closed bool
	wake   chan struct{}
	done   chan struct{}
}

func newRemover(log *slog.Logger) *remover {
	r := &remover{remove: os.RemoveAll, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go r.run()
	return r
}

// add queues paths for deletion and returns at once (once closed, it
// deletes them itself).
func (r *remover) add(paths []string) {
	if len(paths) == 0 {
		return
	}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.removeAll(paths)
		return
	}
	r.queue = append(r.queue, paths...)
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *remover) run() {
	defer close(r.done)
	for {
		r.mu.Lock()
		q, closed := r.queue, r.closed
		r.queue = nil
		r.mu.Unlock()
		r.removeAll(q)
		switch {
		case len(q) > 0:
		case closed:
			return
		default:
			<-r.wake
		}
	}
}

func (r *remover) removeAll(paths []string) {
	for _, p := range paths {
		if err := r.remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			r.log.Error("image cache: remove evicted files", "path", p, "err", err)
		}
	}
}

// close deletes what is queued and stops the background deletion.
func (r *remover) close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	<-r.done
}
