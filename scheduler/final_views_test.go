package scheduler

import (
	"strings"
	"testing"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
)

// A client following an operation gets its result even when
// max_completed_bytes forgets the operation before the client reads it:
// a follower is woken once the completion is durable, and another
// transaction may have forgotten it meanwhile; it answered NOT_FOUND for
// an action that had completed. The final state is kept while clients
// follow the operation, and dropped by the next tick after they stop.
func TestFollowersReadWhatTheBoundForgot(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxCompletedBytes = 1000
	s := newTestScheduler(t, cfg, nil)
	hit := func(name, fill string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.core.AddCompleted(s.clock.Now(), name, "", "", actionDigest(name), &repb.ExecuteResponse{CachedResult: true, Message: strings.Repeat(fill, 800)})
		s.apply()
	}
	hit("x", "x")
	release, ok := s.follower("x", "")
	if !ok {
		t.Fatal("x is not known")
	}
	hit("y", "y") // past the bound: x is forgotten
	s.mu.Lock()
	_, known := s.core.Operation("x")
	s.mu.Unlock()
	if known {
		t.Fatal("x is still retained; the test means it forgotten")
	}
	v, _, ok := s.watch("x", "")
	if !ok || !v.done || v.response.GetMessage() != strings.Repeat("x", 800) {
		t.Fatalf("x's follower reads known %v, done %v; want its final state", ok, v.done)
	}
	if _, _, ok := s.watch("x", "another tenant"); ok {
		t.Fatal("another tenant reads x's final state")
	}
	release()
	s.Tick()
	if _, _, ok := s.watch("x", ""); ok {
		t.Fatal("x's final state is kept after its last follower left and a tick")
	}
}
