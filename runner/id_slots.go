package runner

import (
	"sync"

	"github.com/paddock-build/paddock/sandbox"
)

// idSlots hands out host id ranges to running sandboxes: slot i maps
// container ids 0..65535 to host ids base+i*65536 onwards. Two sandboxes
// running at once never share a slot, so neither can touch the files the
// other creates (nor signal or ptrace its processes). The lowest free slot
// is taken, so that sequential actions reuse slot 0 and the sandbox
// spawner's pre-started init (kept per id mapping) fits them. Safe for
// concurrent use.
type idSlots struct {
	base uint32
	mu   sync.Mutex
	used []bool
}

func newIDSlots(base uint32, n int) *idSlots {
	return &idSlots{base: base, used: make([]bool, n)}
}

// acquire returns a free slot and its host id base, or false if all are
// in use.
func (s *idSlots) acquire() (slot int, hostBase uint32, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, u := range s.used {
		if !u {
			s.used[i] = true
			return i, s.base + uint32(i)*sandbox.DefaultIDRange, true
		}
	}
	return 0, 0, false
}

func (s *idSlots) release(slot int) {
	s.mu.Lock()
	s.used[slot] = false
	s.mu.Unlock()
}
