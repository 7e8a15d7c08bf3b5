package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopSignal is the cause of the context main gives a role when a signal
// ends it, so the role's log can name the signal.
type stopSignal struct{ sig os.Signal }

func (s stopSignal) Error() string { return s.name() + " received" }

// name is the signal as operators write it ("SIGTERM"), not as Go prints
// it ("terminated").
func (s stopSignal) name() string {
	if n, ok := s.sig.(syscall.Signal); ok {
		if name := unix.SignalName(n); name != "" {
			return name
		}
	}
	return s.sig.String()
}

// notifyStop is signal.NotifyContext whose context's cause, once one of
// sigs arrives, is a stopSignal naming it. Like NotifyContext it keeps
// the signals diverted (a second one does not kill the process) until
// stop is called.
func notifyStop(parent context.Context, sigs ...os.Signal) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, sigs...)
	go func() {
		select {
		case s := <-ch:
			cancel(stopSignal{s})
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(nil); signal.Stop(ch) }
}

// watchStop logs that role begins stopping as soon as ctx ends (with the
// signal that ended it), and returns the function the role defers first,
// so it runs once everything else is closed: it logs that the role has
// stopped and how long the stop took. An operator reading the log can so
// tell a clean stop from a crash: a role that returns without ctx ending
// (an error) logs neither line, and main prints its error.
func watchStop(ctx context.Context, logger *slog.Logger, role string) (stopped func()) {
	began := make(chan time.Time, 1)
	returned := make(chan struct{})
	go func() {
		defer close(began)
		select {
		case <-ctx.Done():
		case <-returned:
			if ctx.Err() == nil {
				return
			}
		}
		logger.Info(role+" stopping", stopCause(ctx))
		began <- time.Now()
	}()
	return func() {
		close(returned)
		if t, ok := <-began; ok {
			logger.Info(role+" stopped", "took", time.Since(t).Round(time.Microsecond))
		}
	}
}

// stopCause is why ctx ended, as a log attribute: the signal, or else
// the context's cause.
func stopCause(ctx context.Context) slog.Attr {
	cause := context.Cause(ctx)
	var s stopSignal
	if errors.As(cause, &s) {
		return slog.String("signal", s.name())
	}
	return slog.Any("cause", cause)
}
