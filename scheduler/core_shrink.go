package scheduler

// A Go map never gives back the room it grew to: after a burst of 200,000
// queued actions had run and their operations had expired, the core kept
// maps sized for 200,000 for good. Each tick notes the size of the maps
// that grow with the load (peaks), and a map that has fallen to a quarter
// of its noted peak, past shrinkFrom entries, is made again at its size:
// O(n) work after at least 3n removals. A burst that comes and goes
// between two ticks is not noted; the ones that last (operations are
// retained for CompletedRetention) are.
const shrinkFrom = 4096

// peaks are the largest sizes the core's growing maps had at a tick since
// each was last made.
type peaks struct {
	ops, execs, inflight, avoided int
}

// shrinkMaps notes the maps' sizes and makes again those that shrank.
func (c *core) shrinkMaps() {
	c.ops = shrunk(c.ops, &c.peaks.ops)
	c.execs = shrunk(c.execs, &c.peaks.execs)
	c.inflight = shrunk(c.inflight, &c.peaks.inflight)
	c.avoided = shrunk(c.avoided, &c.peaks.avoided)
}

// shrunk returns m, or a copy of it made at its size if it has fallen to
// a quarter of *peak; it updates *peak.
func shrunk[K comparable, V any](m map[K]V, peak *int) map[K]V {
	*peak = max(*peak, len(m))
	if *peak <= shrinkFrom || len(m) >= *peak/4 {
		return m
	}
	n := make(map[K]V, len(m)) // not maps.Clone, which may keep m's room
	for k, v := range m {
		n[k] = v
	}
	*peak = len(n)
	return n
}
