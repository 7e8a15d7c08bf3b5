// Package testlog is where tests send the logs of the code they run: a
// Buffer to assert on what was logged (safe while goroutines still write
// to it), or the test's own log, so that a failing test shows what led up
// to it and a passing one stays quiet.
package testlog

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer that goroutines may write to while the test
// reads it: a logger's, or a child process's stderr.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *Buffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String is everything written so far.
func (l *Buffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writer writes each Write to t's log, one line, trimmed.
type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// Logger logs text records to t's log; a nil opts is slog's default
// (level INFO).
func Logger(t testing.TB, opts *slog.HandlerOptions) *slog.Logger {
	return slog.New(slog.NewTextHandler(writer{t}, opts))
}
