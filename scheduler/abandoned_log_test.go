package scheduler

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestAbandonedOperationsAreLoggedBounded: a tick that abandons many
// operations names the first few in a line each and counts the rest in
// one line, rather than writing a line per operation under the
// scheduler's lock.
func TestAbandonedOperationsAreLoggedBounded(t *testing.T) {
	for _, n := range []int{0, 3, maxAbandonedLines, 100_000} {
		var buf bytes.Buffer
		log := slog.New(slog.NewTextHandler(&buf, nil))
		var names []string
		for i := range n {
			names = append(names, fmt.Sprintf("operations/%06d", i))
		}
		logAbandoned(log, names, time.Minute)
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if n == 0 {
			if buf.Len() != 0 {
				t.Errorf("nothing abandoned, logged %q", buf.String())
			}
			continue
		}
		want := min(n, maxAbandonedLines)
		if n > maxAbandonedLines {
			want++
			if last := lines[len(lines)-1]; !strings.Contains(last, fmt.Sprintf("count=%d", n-maxAbandonedLines)) {
				t.Errorf("%d abandoned: last line %q does not count the rest", n, last)
			}
		}
		if len(lines) != want {
			t.Errorf("%d abandoned: %d lines, want %d", n, len(lines), want)
		}
		if !strings.Contains(lines[0], "operation=operations/000000") {
			t.Errorf("%d abandoned: first line %q does not name the first operation", n, lines[0])
		}
	}
}
