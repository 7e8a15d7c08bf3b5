package statuspage

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRefusedSignInsAreLoggedOnceAMinute: a flood of bad tokens writes one
// Info line a minute, the next one counting those passed over.
func TestRefusedSignInsAreLoggedOnceAMinute(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var l refusalLog
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 3000 {
		l.refused(logger, now.Add(time.Duration(i)*time.Millisecond), "127.0.0.1:1", "bad token")
	}
	if n := strings.Count(buf.String(), "sign-in refused"); n != 1 {
		t.Fatalf("%d lines for 3,000 refusals within a minute, want 1:\n%s", n, buf.String())
	}
	l.refused(logger, now.Add(refusalLogInterval+time.Second), "127.0.0.1:1", "bad token")
	if !strings.Contains(buf.String(), "refused_since_last_logged=2999") {
		t.Fatalf("the next minute's line does not count the 2,999 passed over:\n%s", buf.String())
	}
}
