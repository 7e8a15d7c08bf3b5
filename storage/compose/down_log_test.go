package compose

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// A side that fails on every call is logged once per interval, not once
// per call; each side on its own.
func TestDownLogIsRateLimited(t *testing.T) {
	var buf bytes.Buffer
	l := newDownLog(slog.New(slog.NewTextHandler(&buf, nil)), "left", "right")
	for range 1000 {
		l.warn(0, "side failed", "read", errors.New("down"))
	}
	l.warn(1, "side failed", "read", errors.New("down"))
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "backend=left") || !strings.Contains(lines[1], "backend=right") {
		t.Fatalf("logged:\n%s\nwant one line per side", buf.String())
	}
	if l.silent[0].Load() != 999 {
		t.Fatalf("%d failures counted as not logged, want 999", l.silent[0].Load())
	}
}
