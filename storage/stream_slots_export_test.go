package storage

import "time"

// SetStreamSlotWait makes s's ByteStream streams wait at most d for a
// slot instead of maxSlotWait, so that a test of the refusal is quick.
func SetStreamSlotWait(s *Server, d time.Duration) {
	s.bs.mu.Lock()
	s.bs.slotWaitBound = d
	s.bs.mu.Unlock()
}

// SetStreamSlotWaitBytes makes the first messages of s's Writes waiting
// for a slot hold at most n bytes together instead of
// maxWaitingWriteBytes, so that a test reaches the bound with small ones.
func SetStreamSlotWaitBytes(s *Server, n int64) {
	s.bs.mu.Lock()
	s.bs.waitBytesBound = n
	s.bs.mu.Unlock()
}

// StreamSlots returns how many slots s's ByteStream streams hold, and
// how many streams wait for one.
func StreamSlots(s *Server) (open, waiting int) {
	s.bs.mu.Lock()
	defer s.bs.mu.Unlock()
	return s.bs.open, s.bs.waiting.Len()
}

// StreamSlotWaitingBytes returns what the first messages of s's Writes
// waiting for a slot hold, as the server counts them.
func StreamSlotWaitingBytes(s *Server) int64 {
	s.bs.mu.Lock()
	defer s.bs.mu.Unlock()
	return s.bs.waitingBytes
}

// SameNameWaiters returns how many Writes of s wait for another stream's
// upload of their name.
func SameNameWaiters(s *Server) int {
	s.bs.mu.Lock()
	defer s.bs.mu.Unlock()
	return s.bs.sameNameWaiting
}
