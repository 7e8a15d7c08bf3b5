package scheduler

import (
	"errors"
	"fmt"
	"time"

	"github.com/paddock-build/paddock/scheduler/journal"
)

// Config is how the scheduler behaves. Every field has a default
// (DefaultConfig, the one place they are written); a zero value in code
// means "use the default" only where a field says so. Its file form, with
// the same fields, is configs.Scheduling (`paddock scheduler --config`),
// which converts to it.
type Config struct {
	// MaxActionTimeout is the longest Action.timeout a client may ask for;
	// a longer one is refused with INVALID_ARGUMENT. Default 1h.
	MaxActionTimeout time.Duration
	// DefaultActionTimeout is given to the worker for actions without a
	// timeout. Default 15m.
	DefaultActionTimeout time.Duration
	// LeaseDuration is how long a worker may stay silent (no heartbeat, no
	// message) before it is considered lost and its actions are requeued.
	// Default 30s.
	LeaseDuration time.Duration
	// ReconnectGrace is how long a worker whose stream broke (connection
	// lost, process killed) may take to reconnect before its actions are
	// requeued; at most LeaseDuration. Default 10s.
	ReconnectGrace time.Duration
	// HeartbeatInterval is how often workers are told to send a heartbeat;
	// keep it well below LeaseDuration. Default 10s.
	HeartbeatInterval time.Duration
	// TimeoutGrace is how long past an action's timeout the scheduler waits
	// for its worker's result (input fetch and output upload take time too)
	// before it completes the operation with DEADLINE_EXCEEDED and cancels
	// the action on the worker, so a stuck worker that still heartbeats
	// cannot hold a client forever. Default 5m.
	TimeoutGrace time.Duration
	// MaxRetries is how many times an action whose worker was lost is
	// queued again; after that it completes with UNAVAILABLE, so an action
	// that kills its workers is not retried forever. Default 3.
	MaxRetries int
	// MaxQueuedPerInstance bounds the queued (not yet running) executions
	// of one instance name; Execute beyond it fails with RESOURCE_EXHAUSTED.
	// Default 1,000,000.
	MaxQueuedPerInstance int
	// CompletedRetention is how long a completed operation stays known for
	// WaitExecution, GetOperation and ListOperations (cache hits included).
	// Clients call WaitExecution soon after a broken stream, and every
	// retained operation holds its ExecuteResponse in memory, so keep it
	// short. Default 1m.
	CompletedRetention time.Duration
	// MaxCompletedBytes bounds the ExecuteResponses that completed
	// operations hold in memory together, by their encoded size (in memory
	// a response takes two to three times that). Past it the
	// oldest completed operations are forgotten before their
	// CompletedRetention is up (a WaitExecution for one answers NOT_FOUND,
	// and the client executes again, a cache hit). Without it, a client
	// repeating Execute on a cached action with a large result made the
	// scheduler hold a copy of that result per call for a minute. Default
	// 64 MiB: at 2 KB a response, 30,000 operations; each snapshot of the
	// journal encodes them all, so a larger bound costs memory twice.
	MaxCompletedBytes int64
	// ExecuteUpdateInterval is how often an Execute or WaitExecution stream
	// repeats the operation's state while nothing changes, so proxies and
	// load balancers do not cut a stream idle for a long action. Default 1m.
	ExecuteUpdateInterval time.Duration
	// AbandonedGrace is how long an operation may go without any client
	// following it (an Execute or WaitExecution stream, WaitOperation, or
	// GetOperation polls) before it ends as abandoned (status NOT_FOUND),
	// freeing its worker slot unless another Execute was merged onto its
	// execution.
	// A client whose stream broke has this long to come back with
	// WaitExecution. Default 2m.
	AbandonedGrace time.Duration
	// NoWorkerTimeout is how long actions may stay queued where no
	// connected worker serves their instance name and routing platform
	// (a misspelt OSFamily, a pool whose workers are all gone) before they
	// complete with FAILED_PRECONDITION saying so, as REv2 lists for "no
	// worker being available", instead of waiting forever. Workers that
	// are drained or busy still serve. 0 never fails them (a farm whose
	// workers are started on demand, from none). Default 15m.
	NoWorkerTimeout time.Duration
	// TickInterval is how often leases and retention are checked. Default 1s.
	TickInterval time.Duration
	// RoutingProperties are platform property names, beyond OSFamily, ISA,
	// Arch and Pool, that select a queue (workers must offer them). Default
	// none.
	RoutingProperties []string
	// ExecutionProperties are platform property names, beyond the RBE ones
	// (container-image, docker*, Estimated*, InputRootAbsolutePath), that are
	// accepted and passed to the worker without splitting queues. Default
	// none.
	ExecutionProperties []string
	// JournalDir, when set, keeps the scheduler's state in a journal in
	// this directory, so a restart keeps queued, running and recently
	// completed operations (see docs/scheduler.md). Empty: state lives in
	// memory only and a restart forgets it. Default empty.
	JournalDir string
	// JournalSync is when a journal record counts as written, before the
	// scheduler acts on it: "fsync" (flushed to disk; survives a crash of
	// the machine) or "write" (handed to the kernel; survives a crash of
	// the scheduler, not of the machine, for less I/O). Default fsync.
	JournalSync string
}

// DefaultConfig returns the defaults documented on Config.
func DefaultConfig() Config {
	return Config{
		MaxActionTimeout:      time.Hour,
		DefaultActionTimeout:  15 * time.Minute,
		LeaseDuration:         30 * time.Second,
		ReconnectGrace:        10 * time.Second,
		HeartbeatInterval:     10 * time.Second,
		TimeoutGrace:          5 * time.Minute,
		MaxRetries:            3,
		MaxQueuedPerInstance:  1_000_000,
		CompletedRetention:    time.Minute,
		MaxCompletedBytes:     64 << 20,
		ExecuteUpdateInterval: time.Minute,
		TickInterval:          time.Second,
		AbandonedGrace:        2 * time.Minute,
		NoWorkerTimeout:       15 * time.Minute,
		JournalSync:           "fsync",
	}
}

// Validate checks a Config, which starts from DefaultConfig (the one place
// defaults are written) and may be changed by a file or a caller: every
// duration and bound must be positive, and the ones that depend on each
// other consistent. Errors name the config key.
func (c Config) Validate() error {
	for _, d := range []struct {
		key string
		v   time.Duration
	}{
		{"max_action_timeout", c.MaxActionTimeout}, {"default_action_timeout", c.DefaultActionTimeout},
		{"lease_duration", c.LeaseDuration}, {"reconnect_grace", c.ReconnectGrace},
		{"heartbeat_interval", c.HeartbeatInterval}, {"timeout_grace", c.TimeoutGrace},
		{"completed_retention", c.CompletedRetention}, {"execute_update_interval", c.ExecuteUpdateInterval},
		{"tick_interval", c.TickInterval}, {"abandoned_grace", c.AbandonedGrace},
	} {
		if d.v <= 0 {
			return fmt.Errorf("scheduler: %s must be positive (got %s)", d.key, d.v)
		}
	}
	switch {
	case c.DefaultActionTimeout > c.MaxActionTimeout:
		return errors.New("scheduler: default_action_timeout must not exceed max_action_timeout")
	case c.ReconnectGrace > c.LeaseDuration:
		return errors.New("scheduler: reconnect_grace must not exceed lease_duration")
	case c.HeartbeatInterval >= c.LeaseDuration:
		return errors.New("scheduler: heartbeat_interval must be shorter than lease_duration")
	case c.MaxRetries < 0:
		return errors.New("scheduler: max_retries must not be negative")
	case c.MaxQueuedPerInstance <= 0:
		return errors.New("scheduler: max_queued_per_instance must be positive")
	case c.MaxCompletedBytes <= 0:
		return errors.New("scheduler: max_completed_bytes must be positive")
	case c.NoWorkerTimeout < 0:
		return errors.New("scheduler: no_worker_timeout must not be negative (0: never)")
	}
	// Checked here, not only when the journal opens, so that --print-config
	// and a --journal-sync flag are held to it as a config file is.
	if _, err := journal.ParseSyncPolicy(c.JournalSync); err != nil {
		return fmt.Errorf("scheduler: journal_sync: %w", err)
	}
	return nil
}
