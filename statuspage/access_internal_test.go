package statuspage

import (
	"testing"
	"time"

	"github.com/paddock-build/paddock/auth"
)

func TestSafeNextStaysOnThisSite(t *testing.T) {
	for in, want := range map[string]string{
		"":                      "/",
		"/":                     "/",
		"/?stage=queued":        "/?stage=queued",
		"/action/abc-1":         "/action/abc-1",
		"//evil.example/":       "/",
		"/\\evil.example":       "/",
		"https://evil.example/": "/",
		"evil":                  "/",
		"/\r\nSet-Cookie: x=1":  "/",
		"/\t/evil.example":      "/", // browsers drop the tab: //evil.example
		"/\n/evil.example":      "/",
		"/a/\\evil":             "/",
		"/\x7f/evil.example":    "/",
	} {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestSessionsExpireAndStayBounded: a session lives its ttl from the
// login, not a moment more; past max sessions the expired ones go, then
// the one closest to expiry; a signed-out id is dead.
func TestSessionsExpireAndStayBounded(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, 3, func() time.Time { return now })
	pr := &auth.Principal{Name: "ops/on-call"}
	create := func() string {
		id, lasts := s.create(pr, time.Time{})
		if lasts != time.Hour {
			t.Fatalf("a session of a static token lasts %v, want the ttl", lasts)
		}
		return id
	}
	a := create()
	now = now.Add(10 * time.Minute)
	b := create()
	c := create()
	if s.get(a) != pr || s.get("") != nil || s.get("forged") != nil {
		t.Fatal("a live session is not found, or a made-up one is")
	}
	d := create() // full: a, the oldest, goes
	if s.get(a) != nil || s.get(b) == nil || s.get(d) == nil {
		t.Fatal("the session closest to expiry was not the one evicted")
	}
	s.end(b)
	if s.get(b) != nil {
		t.Fatal("a signed-out session still works")
	}
	now = now.Add(time.Hour - time.Nanosecond) // c and d were created at 0:10
	if s.get(c) == nil {
		t.Fatal("a session ended before its hour")
	}
	now = now.Add(time.Nanosecond)
	if s.get(c) != nil || s.get(d) != nil {
		t.Fatal("a session outlived its hour")
	}
	if len(s.byID) != 0 {
		t.Fatalf("%d expired sessions kept after being looked up", len(s.byID))
	}
}

// TestSessionsEndWithTheirToken: a session signed in with a JWT ends when
// the JWT expires, even before the ttl (a five-minute token must not give
// eight hours); a later expiry does not extend the ttl.
func TestSessionsEndWithTheirToken(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newSessions(time.Hour, 10, func() time.Time { return now })
	pr := &auth.Principal{Name: "ops/on-call"}
	short, lasts := s.create(pr, now.Add(5*time.Minute))
	if lasts != 5*time.Minute {
		t.Fatalf("a session of a token expiring in 5m lasts %v", lasts)
	}
	long, lasts := s.create(pr, now.Add(48*time.Hour))
	if lasts != time.Hour {
		t.Fatalf("a session of a token expiring in 48h lasts %v, want the 1h ttl", lasts)
	}
	now = now.Add(5*time.Minute - time.Nanosecond)
	if s.get(short) != pr {
		t.Fatal("the session ended before its token")
	}
	now = now.Add(time.Nanosecond)
	if s.get(short) != nil {
		t.Fatal("the session outlived its token")
	}
	now = now.Add(55 * time.Minute)
	if s.get(long) != nil {
		t.Fatal("the session outlived the ttl because its token did")
	}
}
