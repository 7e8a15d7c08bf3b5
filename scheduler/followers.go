package scheduler

import (
	"sort"
	"time"
)

// followers counts, per operation, the clients following it (Execute and
// WaitExecution streams, WaitOperation calls; an Execute from the moment
// the core accepts it, see accept), and since when an operation has had
// none. An operation nobody has followed for Config.AbandonedGrace
// is abandoned: the scheduler cancels it (Scheduler.Tick), which stops its
// execution unless another operation was merged onto it. A client that
// lost its stream has the grace to come back with WaitExecution; one that
// polls with GetOperation counts as following at each poll.
//
// Pure bookkeeping under Scheduler.mu; times come from the scheduler's
// clock.
type followers struct {
	n    map[string]int
	idle map[string]time.Time // operations nobody follows, since when
	// finals are the last states of completed operations that
	// max_completed_bytes forgot while clients followed them (keepFinal).
	finals map[string]opView
}

func newFollowers() *followers {
	return &followers{n: map[string]int{}, idle: map[string]time.Time{}, finals: map[string]opView{}}
}

// keepFinal keeps v, a completed operation the core forgot for
// max_completed_bytes, while clients follow it. A follower is woken once
// the completion is durable, and another transaction may have forgotten
// the operation by the time it reads it: it answered NOT_FOUND for an
// action that had completed. Kept until the next tick finds it followed
// by nobody (abandoned).
func (f *followers) keepFinal(v opView) {
	if f.n[v.name] > 0 {
		f.finals[v.name] = v
	}
}

// operation returns the state of the named operation: the core's, or the
// final state kept for its followers.
func (s *Scheduler) operation(name string) (opView, bool) {
	if v, ok := s.core.Operation(name); ok {
		return v, true
	}
	v, ok := s.followers.finals[name]
	return v, ok
}

// attach counts one more follower of name.
func (f *followers) attach(name string) {
	f.n[name]++
	delete(f.idle, name)
}

// detach counts one follower fewer; with none left, name is idle from now.
func (f *followers) detach(name string, now time.Time) {
	if f.n[name]--; f.n[name] <= 0 {
		delete(f.n, name)
		f.idle[name] = now
	}
}

// touch restarts name's idle time (a poll), if it is idle.
func (f *followers) touch(name string, now time.Time) {
	if _, ok := f.idle[name]; ok {
		f.idle[name] = now
	}
}

// idleFrom marks name, which no client follows yet, idle from now: the
// operations a restarted scheduler recovered, whose clients have
// abandoned_grace to come back.
func (f *followers) idleFrom(name string, now time.Time) {
	if f.n[name] == 0 {
		f.idle[name] = now
	}
}

// forget drops name (done, or deleted).
func (f *followers) forget(name string) {
	delete(f.n, name)
	delete(f.idle, name)
}

// abandoned returns, sorted, the operations idle for longer than grace,
// and forgets them, and the final states nobody follows any more.
func (f *followers) abandoned(now time.Time, grace time.Duration) []string {
	for name := range f.finals {
		if f.n[name] == 0 {
			delete(f.finals, name)
		}
	}
	var out []string
	for name, since := range f.idle {
		if now.Sub(since) > grace {
			out = append(out, name)
			delete(f.idle, name)
		}
	}
	sort.Strings(out)
	return out
}
