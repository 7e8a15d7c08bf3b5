package configs

import (
	"fmt"
	"path/filepath"
	"runtime"
	"slices"
)

// Up configures `paddock up`: the farm on one machine. Its sections are
// the roles' own types, so a section reads as the role's file does. Up
// lays the farm out under Data and wires the roles together itself, so
// some keys have up's own defaults or are set by it (see Resolve).
type Up struct {
	// Data holds all of the farm's data: DATA/storage (the CAS and action
	// cache), DATA/assets, DATA/scheduler (the journal), DATA/worker and
	// DATA/runner. Every directory above it must be searchable by other
	// users (the sandboxes run as unprivileged uids).
	Data      string    `yaml:"data"`
	Storage   Storage   `yaml:"storage"`
	Scheduler Scheduler `yaml:"scheduler"`
	Worker    Worker    `yaml:"worker"`
	Runner    Runner    `yaml:"runner"`
}

// DefaultUp is up's defaults with its data under data: the roles'
// defaults, except that the worker runs one action per CPU with a 2GiB
// file cache (its inputs are linked from the CAS on the same disk), and
// the directories and addresses that Resolve derives from Data are empty.
func DefaultUp(data string) Up {
	u := Up{Data: data, Storage: DefaultStorage(), Scheduler: DefaultScheduler(), Worker: DefaultWorker(), Runner: DefaultRunner()}
	u.Storage.Dir = ""
	u.Scheduler.Listen = ""
	u.Worker.Concurrency = upConcurrency(u.Runner.MaxSandboxes)
	u.Worker.CacheSize = 2 << 30
	return u
}

// upConcurrency is up's default worker concurrency: one action per CPU,
// up to half the runner's sandboxes (at least one), so that cancelled
// actions, which hold theirs until killed, leave room for the next ones.
func upConcurrency(maxSandboxes int) int { return min(runtime.NumCPU(), max(1, maxSandboxes/2)) }

// Resolve fills what up derives from Data and refuses what up wires
// itself. It may be called again on its own result (a printed config
// loads back to the same value):
//   - storage.dir defaults to DATA/storage, scheduler.journal_dir to
//     DATA/scheduler, worker.dir to DATA/worker, worker.id to "local";
//   - runner.socket and runner.state_dir are DATA/runner.sock and
//     DATA/runner, runner.concurrency is worker.concurrency, and Data is
//     hidden from actions on the host's root;
//   - scheduler.listen, scheduler.worker_listen, scheduler.storage,
//     worker.scheduler, worker.storage and worker.runner must be empty:
//     clients use storage.listen, and the roles reach each other inside
//     the process or on sockets under Data;
//   - storage.backend, when set, must be a tree up can open
//     (Backend.Validate), as `paddock storage` checks before it prints
//     its config: up opened it only at start, so --print-config printed
//     a backend that up then refused.
func (u *Up) Resolve() error {
	if !filepath.IsAbs(u.Data) {
		return fmt.Errorf("data: %q: want an absolute path", u.Data)
	}
	for _, w := range []struct{ key, v string }{
		{"scheduler.listen", u.Scheduler.Listen}, {"scheduler.worker_listen", u.Scheduler.WorkerListen},
		{"scheduler.storage", u.Scheduler.Storage}, {"worker.scheduler", u.Worker.Scheduler},
		{"worker.storage", u.Worker.Storage}, {"worker.runner", u.Worker.Runner},
	} {
		if w.v != "" {
			return fmt.Errorf("%s: paddock up wires its roles itself; remove the key (clients use storage.listen)", w.key)
		}
	}
	if b := u.Storage.Backend; b != nil {
		if err := b.Validate("storage.backend"); err != nil {
			return err
		}
	}
	under := func(p *string, name string) {
		if *p == "" {
			*p = filepath.Join(u.Data, name)
		}
	}
	under(&u.Storage.Dir, "storage")
	under(&u.Scheduler.JournalDir, "scheduler")
	under(&u.Worker.Dir, "worker")
	if u.Worker.ID == "" {
		u.Worker.ID = "local"
	}
	u.Runner.Socket = filepath.Join(u.Data, "runner.sock")
	u.Runner.StateDir = filepath.Join(u.Data, "runner")
	// The worker runs one action at a time for a concurrency of 0, while
	// the runner would read its 0 as the number of CPUs and size each
	// sandbox's default memory for that many at once.
	if u.Worker.Concurrency == upConcurrency(DefaultRunner().MaxSandboxes) {
		// The default, taken before the file's max_sandboxes was read.
		u.Worker.Concurrency = upConcurrency(u.Runner.MaxSandboxes)
	}
	u.Runner.Concurrency = max(u.Worker.Concurrency, 1)
	if u.Worker.Concurrency > u.Runner.MaxSandboxes {
		// The runner would refuse the actions past its sandboxes, each
		// retried and failed within milliseconds (outside probe).
		return fmt.Errorf("worker.concurrency %d is more than runner.max_sandboxes %d: the runner could not run that many actions at once; raise max_sandboxes or lower concurrency", u.Worker.Concurrency, u.Runner.MaxSandboxes)
	}
	if !slices.Contains(u.Runner.HostHiddenPaths, u.Data) {
		u.Runner.HostHiddenPaths = append(slices.Clip(u.Runner.HostHiddenPaths), u.Data)
	}
	return nil
}
