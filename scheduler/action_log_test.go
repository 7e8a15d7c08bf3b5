package scheduler

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// TestClientIDsAreClippedInTheLog: a client's ids go into every "action
// completed" line, so each is cut to maxLoggedField bytes, on a rune's
// start; a padded invocation id made 11 KB lines.
func TestClientIDsAreClippedInTheLog(t *testing.T) {
	id := "0f8fad5b-d9cb-469f-a165-70867728950e"
	if got := clipLogged(id); got != id {
		t.Errorf("a UUID became %q", got)
	}
	long := strings.Repeat("x", 11000)
	if got := clipLogged(long); got != strings.Repeat("x", maxLoggedField)+"…" {
		t.Errorf("11,000 bytes became %d bytes", len(got))
	}
	runes := strings.Repeat("é", 100) // two bytes each: 128 falls on a rune's start
	got := clipLogged("a" + runes)
	if !utf8.ValidString(got) || len(got) > maxLoggedField+len("…") || !strings.HasSuffix(got, "…") {
		t.Errorf("a cut inside a rune: %q (%d bytes)", got, len(got))
	}
}
