package sandbox

import (
	"fmt"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Warm inits: the spawner keeps inits started ahead, per kind of clone
// parameters, so that a Run finds one waiting for its plan (see spawner).
// A run of a kind that is not expected again soon (spawnRequest.Transient)
// starts none after it (warmAfter).

// maxWarmKinds bounds how many kinds of clone parameters have a warm init
// at once. A runner uses one kind per id slot, and marks transient the
// slots beyond its live Runs (those cancelled Runs push new ones to), so
// it keeps warm inits for at most as many kinds as it runs actions at
// once.
const maxWarmKinds = 16

// warmSlot is an init being started ahead; ready is closed once w or err
// is set. A Run claims the slot even before it is ready: waiting for an
// init already half started beats starting a second one.
type warmSlot struct {
	ready chan struct{}
	w     *startedInit
	err   error
}

// release discards the slot's init once it is ready.
func (s *spawner) release(ws *warmSlot) {
	<-ws.ready
	if ws.w != nil {
		s.discard(ws.w)
	}
}

// takeWarm returns the oldest warm init for key, waiting for it if it is
// still starting, or nil if there is none (or it failed).
func (s *spawner) takeWarm(key string) *startedInit {
	s.mu.Lock()
	slots := s.warm[key]
	if len(slots) == 0 {
		s.mu.Unlock()
		return nil
	}
	ws := slots[0]
	s.warm[key] = slots[1:]
	s.mu.Unlock()
	<-ws.ready
	return ws.w
}

// warmAfter starts warm inits for p after a run with them, unless the run
// was transient: its id mappings are not expected again soon.
func (s *spawner) warmAfter(p initParams, transient bool) {
	if !transient {
		s.refill(p)
	}
}

// refill starts warm inits for p until warmDepth are there or starting.
// Warm inits are kept for the maxWarmKinds most recently used params; the
// least recently used kind beyond that is discarded.
func (s *spawner) refill(p initParams) {
	key := p.key()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.useClock++
	s.lastUse[key] = s.useClock
	var old []*warmSlot
	if len(s.lastUse) > maxWarmKinds {
		oldest, at := "", ^uint64(0)
		for k, t := range s.lastUse {
			if t < at {
				oldest, at = k, t
			}
		}
		old = s.warm[oldest]
		delete(s.warm, oldest)
		delete(s.lastUse, oldest)
	}
	var fresh []*warmSlot
	for len(s.warm[key]) < s.warmDepth {
		ws := &warmSlot{ready: make(chan struct{})}
		s.warm[key] = append(s.warm[key], ws)
		fresh = append(fresh, ws)
	}
	s.mu.Unlock()
	for _, o := range old {
		s.release(o)
	}
	for _, ws := range fresh {
		ws.w, ws.err = s.startInit(p)
		close(ws.ready)
	}
}

// discard kills an init that never ran a command and releases what it
// holds.
func (s *spawner) discard(w *startedInit) {
	w.proc.signal(syscall.SIGKILL)
	<-w.proc.exited
	w.ctlW.Close()
	w.statR.Close()
	w.stdout.abort()
	w.stderr.abort()
	s.cgroups.put(w.cgParent, w.cg, false)
}

// handOver gives an init the plan: a warm one if there is one for p, with
// res applied to its cgroup. A warm init that died while it waited (its
// control pipe is broken) is discarded and a fresh one started instead:
// that is not the command's doing.
func (s *spawner) handOver(p initParams, res *specs.LinuxResources, frame []byte) (*startedInit, error) {
	w := s.takeWarm(p.key())
	for attempt := 0; ; attempt++ {
		if w == nil {
			var err error
			if w, err = s.startInit(p); err != nil {
				return nil, err
			}
		}
		if err := w.cg.update(res); err != nil {
			s.discard(w)
			return nil, fmt.Errorf("set cgroup limits: %w", err)
		}
		_, err := w.ctlW.Write(frame)
		if err == nil {
			return w, nil
		}
		s.discard(w)
		if attempt > 0 {
			return nil, fmt.Errorf("send plan to sandbox init: %w", err)
		}
		w = nil
	}
}
