package configs

import (
	"time"

	"github.com/paddock-build/paddock/scheduler"
	"github.com/paddock-build/paddock/scheduler/journal"
)

// Scheduler configures `paddock scheduler`, and the scheduler section of
// `paddock up` (where up sets the addresses itself: they must be empty).
type Scheduler struct {
	// Listen is the address clients (Execution, Operations, and storage
	// forwarded) and, without WorkerListen, workers connect to.
	Listen string `yaml:"listen"`
	// WorkerListen, when set, serves the worker protocol and the admin API
	// on this address instead of Listen, apart from clients.
	WorkerListen string `yaml:"worker_listen"`
	// Storage is the REv2 storage endpoint (host:port) holding the CAS and
	// the action cache; required.
	Storage string `yaml:"storage"`
	// Scheduling is how the scheduler behaves; its keys sit at the top
	// level of the file, beside the addresses.
	Scheduling `yaml:",inline"`
}

// Scheduling is the file form of scheduler.Config: the same fields, in the
// same order, with their keys, and sizes written with units (hence a
// conversion field by field, which TestSchedulingConversion checks goes
// both ways). See scheduler.Config for what each one means.
type Scheduling struct {
	MaxActionTimeout      time.Duration `yaml:"max_action_timeout"`
	DefaultActionTimeout  time.Duration `yaml:"default_action_timeout"`
	LeaseDuration         time.Duration `yaml:"lease_duration"`
	ReconnectGrace        time.Duration `yaml:"reconnect_grace"`
	HeartbeatInterval     time.Duration `yaml:"heartbeat_interval"`
	TimeoutGrace          time.Duration `yaml:"timeout_grace"`
	MaxRetries            int           `yaml:"max_retries"`
	MaxQueuedPerInstance  int           `yaml:"max_queued_per_instance"`
	CompletedRetention    time.Duration `yaml:"completed_retention"`
	MaxCompletedBytes     ByteSize      `yaml:"max_completed_bytes"`
	ExecuteUpdateInterval time.Duration `yaml:"execute_update_interval"`
	AbandonedGrace        time.Duration `yaml:"abandoned_grace"`
	NoWorkerTimeout       time.Duration `yaml:"no_worker_timeout"`
	TickInterval          time.Duration `yaml:"tick_interval"`
	RoutingProperties     []string      `yaml:"routing_properties"`
	ExecutionProperties   []string      `yaml:"execution_properties"`
	JournalDir            string        `yaml:"journal_dir"`
	JournalSync           string        `yaml:"journal_sync"`
}

// DefaultScheduler is the scheduler role's defaults: the scheduler
// package's own (scheduler.DefaultConfig) and its listen address.
func DefaultScheduler() Scheduler {
	return Scheduler{Listen: "localhost:8981", Scheduling: schedulingFile(scheduler.DefaultConfig())}
}

// Config is the scheduler package's form of s.
func (s Scheduling) Config() scheduler.Config {
	return scheduler.Config{
		MaxActionTimeout: s.MaxActionTimeout, DefaultActionTimeout: s.DefaultActionTimeout,
		LeaseDuration: s.LeaseDuration, ReconnectGrace: s.ReconnectGrace, HeartbeatInterval: s.HeartbeatInterval,
		TimeoutGrace: s.TimeoutGrace, MaxRetries: s.MaxRetries, MaxQueuedPerInstance: s.MaxQueuedPerInstance,
		CompletedRetention: s.CompletedRetention, MaxCompletedBytes: int64(s.MaxCompletedBytes),
		ExecuteUpdateInterval: s.ExecuteUpdateInterval, AbandonedGrace: s.AbandonedGrace,
		NoWorkerTimeout: s.NoWorkerTimeout, TickInterval: s.TickInterval,
		RoutingProperties: s.RoutingProperties, ExecutionProperties: s.ExecutionProperties,
		JournalDir: s.JournalDir, JournalSync: s.JournalSync,
	}
}

// schedulingFile is c in its file form: Config's inverse.
func schedulingFile(c scheduler.Config) Scheduling {
	return Scheduling{
		MaxActionTimeout: c.MaxActionTimeout, DefaultActionTimeout: c.DefaultActionTimeout,
		LeaseDuration: c.LeaseDuration, ReconnectGrace: c.ReconnectGrace, HeartbeatInterval: c.HeartbeatInterval,
		TimeoutGrace: c.TimeoutGrace, MaxRetries: c.MaxRetries, MaxQueuedPerInstance: c.MaxQueuedPerInstance,
		CompletedRetention: c.CompletedRetention, MaxCompletedBytes: ByteSize(c.MaxCompletedBytes),
		ExecuteUpdateInterval: c.ExecuteUpdateInterval, AbandonedGrace: c.AbandonedGrace,
		NoWorkerTimeout: c.NoWorkerTimeout, TickInterval: c.TickInterval,
		RoutingProperties: c.RoutingProperties, ExecutionProperties: c.ExecutionProperties,
		JournalDir: c.JournalDir, JournalSync: c.JournalSync,
	}
}

// checkValue refuses a journal_sync the journal would refuse only when the
// scheduler opens it, at start: scheduler.Config.Validate does not check
// it, so without this a file naming another policy loaded, and
// --print-config printed it. The rule stays the journal's
// (journal.ParseSyncPolicy); this only runs it when the file is read.
func (Scheduling) checkValue(key, value string) error {
	if key == "journal_sync" {
		if _, err := journal.ParseSyncPolicy(value); err != nil {
			return err
		}
	}
	return nil
}
