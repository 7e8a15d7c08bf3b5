package sandbox

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// cgroupPool keeps the sandbox cgroups of one spawner for reuse: a sandbox
// takes an idle one (or a new one), and gives it back once its last process
// is gone; reset clears its figures and update its limits, so the next
// sandbox starts with no leftover process, fresh limits and fresh
// accounting. Cgroups that cannot be reset (a process left, or a v2
// hierarchy) are removed instead. Safe for concurrent use.
//
// A sandbox's result is sent before its init has finished exiting (the
// kernel tears its namespaces down meanwhile), so its cgroup comes back a
// moment later: such a cgroup is announced (expect), and get waits for it
// (a bounded time) rather than create another.
type cgroupPool struct {
	seq  *atomic.Uint64 // names are "<spawner pid>-<seq>" (see staleName)
	home cgroupHomeV1

	mu        sync.Mutex // guards the fields below
	idle      map[string][]sandboxCgroup
	returning map[string]int // announced, not yet back
	back      chan struct{}  // closed (and replaced) when one comes back
}

const (
	// maxIdleCgroups bounds the idle cgroups kept per parent.
	maxIdleCgroups = 64
	// returnWait bounds how long get waits for an announced cgroup. Its
	// init has been killed and is exiting, normally within milliseconds;
	// the bound only matters when the kernel is slow to tear a sandbox
	// down (a busy machine), and then reuse still beats a new cgroup.
	returnWait = time.Second
)

func newCgroupPool(seq *atomic.Uint64) *cgroupPool {
	return &cgroupPool{seq: seq, idle: map[string][]sandboxCgroup{},
		returning: map[string]int{}, back: make(chan struct{})}
}

// get returns an idle cgroup under parent, or a new one, without limits.
func (p *cgroupPool) get(parent string) (sandboxCgroup, error) {
	var timeout <-chan time.Time
	for {
		p.mu.Lock()
		if n := len(p.idle[parent]); n > 0 {
			cg := p.idle[parent][n-1]
			p.idle[parent] = p.idle[parent][:n-1]
			p.mu.Unlock()
			return cg, nil
		}
		waiting, back := p.returning[parent] > 0, p.back
		p.mu.Unlock()
		if !waiting {
			break
		}
		if timeout == nil {
			t := time.NewTimer(returnWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-back:
			continue
		case <-timeout:
		}
		break
	}
	return newSandboxCgroup(parent, fmt.Sprintf("%d-%d", os.Getpid(), p.seq.Add(1)), nil, &p.home)
}

// expect announces that a cgroup under parent will be put back soon.
func (p *cgroupPool) expect(parent string) {
	p.mu.Lock()
	p.returning[parent]++
	p.mu.Unlock()
}

// put takes back a cgroup whose sandbox has ended (its init reaped);
// expected says it was announced.
func (p *cgroupPool) put(parent string, cg sandboxCgroup, expected bool) {
	reusable := cg.reset()
	p.mu.Lock()
	if expected {
		p.returning[parent]--
	}
	kept := reusable && len(p.idle[parent]) < maxIdleCgroups
	if kept {
		p.idle[parent] = append(p.idle[parent], cg)
	}
	close(p.back)
	p.back = make(chan struct{})
	p.mu.Unlock()
	if kept {
		return
	}
	cg.killAll()
	if err := cg.remove(); err != nil {
		fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
	}
}

// close removes every idle cgroup.
func (p *cgroupPool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]sandboxCgroup{}
	p.mu.Unlock()
	for _, cgs := range idle {
		for _, cg := range cgs {
			if err := cg.remove(); err != nil {
				fmt.Fprintf(os.Stderr, "sandbox spawner: %v\n", err)
			}
		}
	}
}
