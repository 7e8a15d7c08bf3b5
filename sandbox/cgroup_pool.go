package sandbox

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
)

// cgroupPool keeps the sandbox cgroups of one spawner for reuse: a sandbox
// takes an idle one (or a new one), and gives it back once its last process
// is gone; reset clears its figures and update its limits, so the next
// sandbox starts with no leftover process, fresh limits and fresh
// accounting. Cgroups that cannot be reset (a process left, or a v2
// hierarchy) are removed instead. Safe for concurrent use.
type cgroupPool struct {
	seq  *atomic.Uint64 // names are "<spawner pid>-<seq>" (see staleName)
	home cgroupHomeV1

	mu   sync.Mutex // guards idle
	idle map[string][]sandboxCgroup
}

// maxIdleCgroups bounds the idle cgroups kept per parent.
const maxIdleCgroups = 64

func newCgroupPool(seq *atomic.Uint64) *cgroupPool {
	return &cgroupPool{seq: seq, idle: map[string][]sandboxCgroup{}}
}

// get returns an idle cgroup under parent, or a new one, without limits.
func (p *cgroupPool) get(parent string) (sandboxCgroup, error) {
	p.mu.Lock()
	if n := len(p.idle[parent]); n > 0 {
		cg := p.idle[parent][n-1]
		p.idle[parent] = p.idle[parent][:n-1]
		p.mu.Unlock()
		return cg, nil
	}
	p.mu.Unlock()
	return newSandboxCgroup(parent, fmt.Sprintf("%d-%d", os.Getpid(), p.seq.Add(1)), nil, &p.home)
}

// put takes back a cgroup whose sandbox has ended (its init reaped).
func (p *cgroupPool) put(parent string, cg sandboxCgroup) {
	if cg.reset() {
		p.mu.Lock()
		if len(p.idle[parent]) < maxIdleCgroups {
			p.idle[parent] = append(p.idle[parent], cg)
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
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
