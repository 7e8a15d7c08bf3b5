package scheduler

import "time"

// tickLoop ticks every TickInterval until the scheduler stops, and tells
// the core of a stall of the scheduler itself first (forgiveStall).
func (s *Scheduler) tickLoop() {
	defer s.ticker.Done()
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// The monotonic clock: a stopped process or a frozen VM shows
			// as one long gap between ticks.
			gap := time.Since(last)
			last = time.Now()
			if gap >= stallGap(s.cfg) {
				s.forgiveStall(gap - s.cfg.TickInterval)
			}
			s.Tick()
		}
	}
}

// stallGap is the gap between two ticks that counts as a stall of the
// scheduler: half a lease, and at least five ticks.
func stallGap(cfg Config) time.Duration {
	return max(cfg.LeaseDuration/2, 5*cfg.TickInterval)
}

// forgiveStall extends the workers' leases by gap, the time the scheduler
// did not run (core.ForgiveStall), and says so.
func (s *Scheduler) forgiveStall(gap time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.log.Warn("scheduler: did not run for a while (a stopped process, a frozen or swapping machine); the workers' leases are extended by that time", "stall", gap.Round(time.Millisecond))
	s.core.ForgiveStall(s.clock.Now(), gap)
}
