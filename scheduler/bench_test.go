package scheduler

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/auth"
	"github.com/paddock-build/paddock/digest"
	"github.com/paddock-build/paddock/internal/proctest"
	"github.com/paddock-build/paddock/storage"
)

const benchActions = 100_000

func benchScheduler(b testing.TB, mods ...func(*Config)) *Scheduler {
	cfg := DefaultConfig()
	cfg.TickInterval = time.Hour
	for _, mod := range mods {
		mod(&cfg)
	}
	s, err := New(Options{Config: cfg, BlobStore: storage.NewMemoryBlobStore(), ActionCache: storage.NewMemoryActionCache(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return s
}

// benchSubmission is what submit hands the core for a trivial action after
// validation: fresh digests, a platform and a timeout.
// submitBench queues benchSubmission(i) on s's core, under s.mu as
// Execute does, and applies what it did (journal, dispatch).
func submitBench(tb testing.TB, s *Scheduler, i int) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.core.Execute(s.clock.Now(), benchSubmission(i)); err != nil {
		tb.Fatal(err)
	}
	s.apply()
}

func benchSubmission(i int) submission {
	ad := digest.FromBytes(repb.DigestFunction_SHA256, []byte(fmt.Sprintf("action %d", i)))
	cd := digest.FromBytes(repb.DigestFunction_SHA256, []byte(fmt.Sprintf("command %d", i)))
	rd := digest.Empty(repb.DigestFunction_SHA256)
	return submission{
		name:       fmt.Sprintf("operations/%08d-0000-0000-0000-000000000000", i),
		action:     ad,
		cacheable:  true,
		invocation: fmt.Sprintf("invocation-%d", i%10),
		queueKey:   "\x00OSFamily=linux",
		routing:    []*workerpb.Property{linux},
		spec: actionSpec{
			command:   cd,
			inputRoot: rd,
			platform:  []*workerpb.Property{linux},
			timeout:   15 * time.Minute,
		},
	}
}

func benchEnqueue(b *testing.B, s *Scheduler, subs []submission) {
	for _, sub := range subs {
		s.mu.Lock()
		_, err := s.core.Execute(s.clock.Now(), sub)
		s.apply()
		s.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDispatch queues 100,000 trivial actions, then lets in-process
// workers (4 × concurrency 16) speak the worker protocol's session API
// (assignment out, serialized ExecuteResponse back) until all are done.
// It reports dispatched actions per second (assign + result + completion).
func BenchmarkDispatch(b *testing.B) { benchDispatch(b) }

// BenchmarkDispatchTenants is BenchmarkDispatch with the 100,000 actions
// spread over 100 tenants × 1,000 (10 invocations each), queued tenant
// after tenant, so every dispatch chooses between 100 tenants' queues.
// With /max_running, each tenant may run 8 at once (the workers have 64
// slots), so dispatches also skip tenants at their limit.
func BenchmarkDispatchTenants(b *testing.B) {
	tenantSub := func(i int) submission {
		s := benchSubmission(i)
		s.owner = fmt.Sprintf("tenant-%03d", i/1000) // same instance name: only the tenants differ from Dispatch
		return s
	}
	b.Run("unlimited", func(b *testing.B) { benchDispatchOf(b, tenantSub, nil) })
	limits := map[string]auth.Limits{}
	for t := 0; t < 100; t++ {
		limits[fmt.Sprintf("tenant-%03d", t)] = auth.Limits{MaxRunning: 8}
	}
	b.Run("max_running", func(b *testing.B) { benchDispatchOf(b, tenantSub, limits) })
}

// BenchmarkDispatchJournal is BenchmarkDispatch with the journal on, in a
// temporary directory, under each sync policy: every assignment and result
// is written (and under fsync, flushed) before it takes effect.
func BenchmarkDispatchJournal(b *testing.B) {
	for _, policy := range []string{"fsync", "write"} {
		b.Run(policy, func(b *testing.B) {
			benchDispatch(b, func(c *Config) { c.JournalDir, c.JournalSync = b.TempDir(), policy })
		})
	}
}

func benchDispatch(b *testing.B, mods ...func(*Config)) {
	benchDispatchOf(b, benchSubmission, nil, mods...)
}

// benchDispatchOf runs BenchmarkDispatch's load made of sub(0 … 99,999),
// under tenant limits.
func benchDispatchOf(b *testing.B, sub func(int) submission, limits map[string]auth.Limits, mods ...func(*Config)) {
	result, _ := proto.Marshal(&repb.ExecuteResponse{Result: &repb.ActionResult{ExitCode: 0}})
	var total, cpu time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		s := benchScheduler(b, mods...)
		s.core.limits = limits
		subs := make([]submission, benchActions)
		for j := range subs {
			subs[j] = sub(j)
		}
		benchEnqueue(b, s, subs)
		if s.dur != nil {
			if err := s.dur.j.WaitDurable(s.dur.j.LastSeq()); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start, startCPU := time.Now(), proctest.SelfCPU()
		var done atomic.Int64
		allDone := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 4; w++ {
			sess, err := s.connectWorker(context.Background(), &workerpb.Register{WorkerId: fmt.Sprint("w", w), Concurrency: 16, Platform: []*workerpb.Property{linux}})
			if err != nil {
				b.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					ms, err := sess.next(ctx)
					if err != nil {
						return
					}
					for _, m := range ms {
						a := m.GetAssignment()
						if a == nil {
							continue
						}
						if err := sess.handle(&workerpb.WorkerMessage{Kind: &workerpb.WorkerMessage_Result{Result: &workerpb.Result{
							OperationName: a.OperationName, Attempt: a.Attempt, ExecuteResponse: result}}}); err != nil {
							b.Errorf("result of %s: %v", a.OperationName, err) // counted below all the same, so that the run ends
						}
						if done.Add(1) == benchActions {
							close(allDone)
						}
					}
				}
			}()
		}
		<-allDone
		total += time.Since(start)
		cpu += proctest.SelfCPU() - startCPU
		b.StopTimer()
		cancel()
		wg.Wait()
		s.mu.Lock()
		if n := len(s.core.execs); n != 0 {
			b.Fatalf("%d executions left", n)
		}
		s.mu.Unlock()
		s.Close()
	}
	b.ReportMetric(float64(benchActions*b.N)/total.Seconds(), "actions/s")
	// CPU time per action (all threads), which waiting for a core on a
	// loaded machine does not inflate as it does wall time.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(benchActions*b.N), "cpu-ns/action")
}

// BenchmarkQueuedOperationMemory reports the heap held per queued operation
// (operation, execution, queue entry and the worker assignment template).
func BenchmarkQueuedOperationMemory(b *testing.B) {
	var perOp float64
	for i := 0; i < b.N; i++ {
		s := benchScheduler(b)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for j := 0; j < benchActions; j++ {
			submitBench(b, s, j)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perOp = float64(after.HeapAlloc-before.HeapAlloc) / benchActions
		runtime.KeepAlive(s)
	}
	b.ReportMetric(perOp, "heap-B/queued-op")
}

// BenchmarkDispatchGRPC is BenchmarkDispatch with the workers on the other
// side of real gRPC streams on loopback (workerclient, 4 × concurrency 16),
// so it includes protobuf and HTTP/2 costs on both sides.
func BenchmarkDispatchGRPC(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := benchScheduler(b)
		srv := grpc.NewServer()
		s.Register(srv)
		go func() { _ = srv.Serve(lis) }() // returns when the benchmark stops the server
		subs := make([]submission, benchActions)
		for j := range subs {
			subs[j] = benchSubmission(j)
		}
		benchEnqueue(b, s, subs)
		var done atomic.Int64
		allDone := make(chan struct{})
		handler := func(ctx context.Context, a *workerpb.Assignment) *repb.ExecuteResponse {
			if done.Add(1) == benchActions {
				close(allDone)
			}
			return &repb.ExecuteResponse{Result: &repb.ActionResult{}}
		}
		b.StartTimer()
		start := time.Now()
		var stops []func()
		for w := 0; w < 4; w++ {
			_, stop := runTestWorker(lis.Addr().String(), fmt.Sprint("w", w), 16, handler, linux)
			stops = append(stops, stop)
		}
		<-allDone
		// The last results are on their way; wait until the core saw them.
		for {
			s.mu.Lock()
			n := len(s.core.execs)
			s.mu.Unlock()
			if n == 0 {
				break
			}
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		b.StopTimer()
		for _, stop := range stops {
			stop()
		}
		s.Close()
		srv.Stop()
	}
	b.ReportMetric(float64(benchActions*b.N)/total.Seconds(), "actions/s")
}

// BenchmarkCoreDispatchTenants measures the core alone (no goroutines,
// no sessions) dispatching to one worker with 64 slots, one completed
// action and one dispatch per op, with b.N actions queued over 1 to 1,000
// tenants, so the cost of choosing a tenant shows apart from the rest.
func BenchmarkCoreDispatchTenants(b *testing.B) {
	for _, tenants := range []int{1, 100, 1000} {
		b.Run(fmt.Sprint("tenants=", tenants), func(b *testing.B) {
			c := newCore(DefaultConfig())
			now := time.Unix(1e9, 0)
			for i := 0; i < b.N+64; i++ {
				s := benchSubmission(i)
				s.owner = fmt.Sprint("tenant-", i%tenants)
				if _, err := c.Execute(now, s); err != nil {
					b.Fatal(err)
				}
			}
			c.takeEffects()
			gen := c.Connect(now, registration{id: "w", capacity: 64, platform: []*workerpb.Property{linux}})
			var running []*workerpb.Assignment
			take := func() {
				for _, m := range c.takeEffects().dispatch {
					if a := m.msg.GetAssignment(); a != nil {
						running = append(running, a)
					}
				}
			}
			take()
			resp := &repb.ExecuteResponse{Result: &repb.ActionResult{}}
			cpu := proctest.SelfCPU()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				a := running[0]
				running = running[1:]
				c.Result(now, "w", gen, a.OperationName, a.Attempt, resp)
				take()
			}
			b.StopTimer()
			// CPU time, unlike ns/op, does not count waiting for a core
			// on a loaded machine.
			b.ReportMetric(float64(proctest.SelfCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
