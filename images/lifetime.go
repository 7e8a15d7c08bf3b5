package images

import (
	"context"
	"sync"
	"time"
)

// lifetime is the context of work that several callers share: it ends
// when the last of its holders lets go (or its time limit passes), not
// when the first gives up, and not long after every one of them has (as
// context.WithoutCancel plus a 30-minute timeout did: a stalled download
// that nobody waited for any more ran on, holding its connection and its
// half-unpacked layer, until the timeout).
//
// A new lifetime is alive with no holds; it ends at the first moment its
// holds drop back to zero, and never comes back: hold then fails. It
// keeps the values of the context it was made from, not its
// cancellation. Safe for concurrent use.
type lifetime struct {
	context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	holds int
	ended bool
}

// newLifetime returns a lifetime with parent's values, ending at limit
// from now at the latest (0: no limit).
func newLifetime(parent context.Context, limit time.Duration) *lifetime {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	if limit > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, limit)
		cancelBoth := cancel
		cancel = func() { stop(); cancelBoth() }
	}
	return &lifetime{Context: ctx, cancel: cancel}
}

// hold adds a holder. It reports false, holding nothing, if l has ended
// (its time limit passing does not count: holders still let go).
func (l *lifetime) hold() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ended {
		return false
	}
	l.holds++
	return true
}

// release drops a hold taken by hold; the last one ends l. It reports
// whether l ended.
func (l *lifetime) release() bool {
	l.mu.Lock()
	l.holds--
	end := l.holds == 0 && !l.ended
	if end {
		l.ended = true
	}
	l.mu.Unlock()
	if end {
		l.cancel()
	}
	return end
}

// holdWhile holds l until ctx ends. It reports false, holding nothing,
// if l has ended.
func (l *lifetime) holdWhile(ctx context.Context) bool {
	if !l.hold() {
		return false
	}
	context.AfterFunc(ctx, func() { l.release() })
	return true
}
