package scheduler

import (
	"time"

	"github.com/paddock-build/paddock/api/workerpb"
)

// worker is the scheduler's view of one worker, across its reconnects.
// Owned by core. It is forgotten when its lease expires.
type worker struct {
	id        string
	platform  []*workerpb.Property
	props     map[string]bool // name + "\x00" + value
	instances []string        // empty: all
	capacity  int
	labels    map[string]string
	running   map[string]*execution // by execution id
	gen       uint64                // session generation; bumps on every Register
	connected bool
	draining  bool // an operator drained it: no new work; core.drained[id], while the worker is known
	leaving   bool // this session said Leaving: no new work until it registers again
	// paused: the worker said it cannot run actions now (its runner or
	// storage is down; Register.paused, Heartbeat.paused), so it gets no
	// new work until it says otherwise. Not journalled: every Register
	// says it again.
	paused      bool
	pauseReason string
	restored    bool // recovered from the journal; not registered since the restart
	// pauseNoted is when a pause or resume of this worker was last
	// logged; pauseFlipsUnnoted counts those since, not logged (notePause).
	pauseNoted        time.Time
	pauseFlipsUnnoted int
	lastSeen          time.Time
	lostConn          time.Time // when its stream ended, while !connected
	queues            []*queue  // queues this worker serves
	rr                int       // tie-break rotation between queues of equal priority
}

func propKey(name, value string) string { return name + "\x00" + value }

// serves reports whether the worker may run q's executions: it serves q's
// instance and offers every routing property of q.
func (w *worker) serves(q *queue) bool {
	if len(w.instances) > 0 {
		ok := false
		for _, in := range w.instances {
			if in == q.instance {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	for _, p := range q.routing {
		if !w.props[propKey(p.Name, p.Value)] {
			return false
		}
	}
	return true
}

// eligible reports whether the worker may be given work, now or when a
// slot frees up: connected, and neither drained, leaving nor paused.
func (w *worker) eligible() bool {
	return w.connected && !w.draining && !w.leaving && !w.paused
}

func (w *worker) canTake() bool {
	return w.eligible() && len(w.running) < w.capacity
}
