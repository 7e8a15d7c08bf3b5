package scheduler

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/paddock-build/paddock/internal/proctest"
	"github.com/paddock-build/paddock/storage"
)

// BenchmarkRecovery measures a restart with 100,000 queued operations in
// the journal: opening it, reading and replaying it into the core. "log"
// replays 100,000 records; "snapshot" loads one snapshot of the same state.
func BenchmarkRecovery(b *testing.B) {
	for _, snapshot := range []bool{false, true} {
		name := "log"
		if snapshot {
			name = "snapshot"
		}
		b.Run(name, func(b *testing.B) {
			dir := b.TempDir()
			s := benchScheduler(b, func(c *Config) { c.JournalDir, c.JournalSync = dir, "write" })
			subs := make([]submission, benchActions)
			for j := range subs {
				subs[j] = benchSubmission(j)
			}
			benchEnqueue(b, s, subs)
			if snapshot {
				s.mu.Lock()
				s.startSnapshot()
				s.mu.Unlock()
			}
			s.Close()
			cfg := DefaultConfig()
			cfg.TickInterval = time.Hour
			cfg.JournalDir = dir
			b.ResetTimer()
			var cpu time.Duration
			for i := 0; i < b.N; i++ {
				before := proctest.SelfCPU()
				r, err := New(Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache(),
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
				if err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				cpu += proctest.SelfCPU() - before
				if n := r.core.queuedPerInstance[""]; n != benchActions {
					b.Fatalf("recovered %d queued operations, want %d", n, benchActions)
				}
				r.Close()
				b.StartTimer()
			}
			// On a shared machine wall time includes waiting for a core;
			// the process's CPU time per recovery does not.
			b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
		})
	}
}
