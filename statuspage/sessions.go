package statuspage

import (
	"crypto/rand"
	"crypto/sha256"
	"sync"
	"time"

	"github.com/paddock-build/paddock/auth"
)

// maxSessions bounds the logins kept at once; past it the one closest to
// expiry goes first, so a flood of logins costs memory only up to here.
const maxSessions = 1000

// sessions are the status page's logins, kept on the server: the browser
// holds only a random id (128 bits from crypto/rand) in an HttpOnly,
// SameSite=Strict cookie, which names nothing and cannot be forged or
// extended. Each expires ttl after its login, or when the credential it
// was signed in with does (a JWT's exp), whichever is first, whatever the
// cookie says.
// Safe for concurrent use.
type sessions struct {
	ttl time.Duration
	max int
	now func() time.Time

	mu sync.Mutex
	// byID is keyed by the id's SHA-256, so a lookup's timing says nothing
	// about a live id.
	byID map[[32]byte]*session
}

// session is one login.
type session struct {
	principal *auth.Principal
	expires   time.Time
}

func newSessions(ttl time.Duration, max int, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, max: max, now: now, byID: map[[32]byte]*session{}}
}

// create starts a session for pr, to end by until if that is not zero
// (the expiry of the token it was signed in with: a session must not
// outlive it), and returns its id and how long it lasts.
func (s *sessions) create(pr *auth.Principal, until time.Time) (string, time.Duration) {
	id := rand.Text()
	now := s.now()
	expires := now.Add(s.ttl)
	if !until.IsZero() && until.Before(expires) {
		expires = until
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byID) >= s.max {
		s.evict(now)
	}
	s.byID[sha256.Sum256([]byte(id))] = &session{principal: pr, expires: expires}
	return id, expires.Sub(now)
}

// evict drops the expired sessions, or if none is, the one closest to
// expiry. Called with mu held, when full.
func (s *sessions) evict(now time.Time) {
	var soonest [32]byte
	var at time.Time
	for k, v := range s.byID {
		if !now.Before(v.expires) {
			delete(s.byID, k)
			continue
		}
		if at.IsZero() || v.expires.Before(at) {
			soonest, at = k, v.expires
		}
	}
	if len(s.byID) >= s.max {
		delete(s.byID, soonest)
	}
}

// get returns the principal of a live session, or nil.
func (s *sessions) get(id string) *auth.Principal {
	if id == "" {
		return nil
	}
	k := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.byID[k]
	if v == nil {
		return nil
	}
	if !s.now().Before(v.expires) {
		delete(s.byID, k)
		return nil
	}
	return v.principal
}

// end forgets a session (Sign out).
func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, sha256.Sum256([]byte(id)))
}
