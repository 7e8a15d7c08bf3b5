package storage

import "time"

// SetStreamSlotWait makes s's ByteStream streams wait at most d for a
// slot instead of maxSlotWait, so that a test of the refusal is quick.
func SetStreamSlotWait(s *Server, d time.Duration) {
	s.bs.mu.Lock()
	s.bs.slotWaitBound = d
	s.bs.mu.Unlock()
}

// StreamSlots returns how many slots s's ByteStream streams hold, and how
// many streams wait for one.
func StreamSlots(s *Server) (open, waiting int) {
	s.bs.mu.Lock()
	defer s.bs.mu.Unlock()
	return s.bs.open, s.bs.waiting.Len()
}
