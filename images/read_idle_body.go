package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// ErrRegistryStalled is wrapped by the error of a registry request that
// received nothing for Options.ReadIdleTimeout: no response headers, or
// no more of its body.
var ErrRegistryStalled = errors.New("the registry stopped sending")

// idleTimer cancels a request that receives nothing for a while. The
// transport's own timeouts cover connecting and the response headers, not
// a body: a registry that sent a blob's headers and then nothing held the
// pull until the action's deadline, and with no deadline for ever.
type idleTimer struct {
	idle  time.Duration
	timer *time.Timer
	fired atomic.Bool
}

// startIdleTimer calls cancel once idle passes without a reset. With
// idle 0 it never does.
func startIdleTimer(idle time.Duration, cancel context.CancelFunc) *idleTimer {
	t := &idleTimer{idle: idle}
	if idle > 0 {
		t.timer = time.AfterFunc(idle, func() {
			t.fired.Store(true)
			cancel()
		})
	}
	return t
}

// reset starts the wait again: something was received.
func (t *idleTimer) reset() {
	if t.timer != nil {
		t.timer.Reset(t.idle)
	}
}

func (t *idleTimer) stop() {
	if t.timer != nil {
		t.timer.Stop()
	}
}

// explain replaces err, the error of a request it cancelled, by one that
// says why.
func (t *idleTimer) explain(err error) error {
	if err == nil || err == io.EOF || !t.fired.Load() {
		return err
	}
	return fmt.Errorf("nothing received for %s: %w", t.idle, ErrRegistryStalled)
}

// idleBody is a response body whose every read that returns data resets
// its request's idleTimer. Closing it ends the request.
type idleBody struct {
	io.ReadCloser
	idle   *idleTimer
	cancel context.CancelFunc
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.idle.reset()
	}
	return n, b.idle.explain(err)
}

func (b *idleBody) Close() error {
	b.idle.stop()
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}
