package storage

import "time"

// SetTreePageWait makes s's GetTree pages wait at most d for their
// client instead of maxTreePageWait, so that a test of the bound is quick.
func SetTreePageWait(s *Server, d time.Duration) { s.cas.pageWaitBound.Store(int64(d)) }

// TreeCalls returns how many of s's GetTree calls hold a slot, and how
// many wait for one.
func TreeCalls(s *Server) (holding, waiting int) { return s.cas.treeCalls.held() }

// TreeCallSlots is how many GetTree calls are in progress at once.
func TreeCallSlots() int { return treeCallSlots() }
