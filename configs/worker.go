package configs

import (
	"errors"
	"fmt"

	"github.com/paddock-build/paddock/worker"
)

// Worker configures `paddock worker`, and the worker section of `paddock
// up` (where up wires the addresses and the directory itself: scheduler,
// storage and runner must be empty, dir defaults to DATA/worker).
type Worker struct {
	// Scheduler is the scheduler's worker-protocol address (host:port);
	// required.
	Scheduler string `yaml:"scheduler"`
	// Storage is the REv2 storage address (host:port); required.
	Storage string `yaml:"storage"`
	// Runner is the UNIX socket of the runner (`paddock runner`); required.
	Runner string `yaml:"runner"`
	// Dir holds the file cache (Dir/files) and the build directories
	// (Dir/builds): one filesystem, since inputs are hard links into the
	// cache. Required.
	Dir string `yaml:"dir"`
	// ID names the worker to the scheduler, stable across restarts.
	// Empty: the host name ("local" in paddock up).
	ID string `yaml:"id"`
	// Concurrency is how many actions run at once.
	Concurrency int `yaml:"concurrency"`
	// CacheSize bounds the file cache. 0 means unbounded (the file cache's
	// reading of 0), not the default as for the bounds below.
	CacheSize ByteSize `yaml:"cache_size"`
	// FileCachePerInstance keeps cached input files apart per instance
	// name, so no hard link crosses tenants' CAS partitions (farms with an
	// auth policy).
	FileCachePerInstance bool `yaml:"file_cache_per_instance"`
	// Platform is the routing properties this worker offers, in order (a
	// name may repeat with several values). Empty: OSFamily and ISA of
	// this machine.
	Platform []Property `yaml:"platform"`
	// Bounds on one action's input root, as its Directory blobs expand it
	// (each reused digest counted again), and on its outputs: see
	// worker.InputLimits and worker.OutputLimits.
	MaxInputFiles  int64    `yaml:"max_input_files"`
	MaxInputBytes  ByteSize `yaml:"max_input_bytes"`
	MaxInputDepth  int      `yaml:"max_input_depth"`
	MaxOutputFiles int64    `yaml:"max_output_files"`
	MaxOutputBytes ByteSize `yaml:"max_output_bytes"`
	MaxOutputDepth int      `yaml:"max_output_depth"`
}

// Property is a platform property: a name and one value.
type Property struct {
	Name  string `yaml:"name"`
	Value string `yaml:"value"`
}

// DefaultWorker is the worker role's defaults; the limits are the worker
// package's own.
func DefaultWorker() Worker {
	in, out := worker.DefaultInputLimits(), worker.DefaultOutputLimits()
	return Worker{
		Concurrency: 2, CacheSize: 10 << 30,
		MaxInputFiles: in.MaxFiles, MaxInputBytes: ByteSize(in.MaxBytes), MaxInputDepth: in.MaxDepth,
		MaxOutputFiles: out.MaxFiles, MaxOutputBytes: ByteSize(out.MaxBytes), MaxOutputDepth: out.MaxDepth,
	}
}

// InputLimits is the worker package's form of the input bounds.
func (w Worker) InputLimits() worker.InputLimits {
	return worker.InputLimits{MaxFiles: w.MaxInputFiles, MaxBytes: int64(w.MaxInputBytes), MaxDepth: w.MaxInputDepth}
}

// OutputLimits is the worker package's form of the output bounds.
func (w Worker) OutputLimits() worker.OutputLimits {
	return worker.OutputLimits{MaxFiles: w.MaxOutputFiles, MaxBytes: int64(w.MaxOutputBytes), MaxDepth: w.MaxOutputDepth}
}

// Validate checks what the worker role needs: its addresses and directory.
func (w Worker) Validate() error {
	if w.Scheduler == "" || w.Storage == "" || w.Runner == "" || w.Dir == "" {
		return errors.New("scheduler, storage, runner and dir are required (--scheduler, --storage, --runner, --dir)")
	}
	for _, p := range w.Platform {
		if p.Name == "" {
			return errors.New("platform: a property without a name")
		}
	}
	return w.CheckCounts()
}

// CheckCounts refuses a negative concurrency or count bound (the sizes are
// ByteSize, never negative): zero means the default; a negative value is
// a mistake, which the worker would otherwise take silently as the
// default too. Validate calls it; up, whose worker section has no
// addresses, calls it alone.
func (w Worker) CheckCounts() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"concurrency", int64(w.Concurrency)},
		{"max_input_files", w.MaxInputFiles}, {"max_input_depth", int64(w.MaxInputDepth)},
		{"max_output_files", w.MaxOutputFiles}, {"max_output_depth", int64(w.MaxOutputDepth)},
	} {
		if f.v < 0 {
			return fmt.Errorf("%s: %d is negative", f.name, f.v)
		}
	}
	if w.Concurrency > MaxConcurrency {
		return fmt.Errorf("concurrency: %d is more than %d actions at once", w.Concurrency, MaxConcurrency)
	}
	return nil
}

// MaxConcurrency bounds a worker's concurrency: far past any machine's
// cores, and within the worker protocol's 32-bit slot count.
const MaxConcurrency = 4096
