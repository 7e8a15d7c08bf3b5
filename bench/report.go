package bench

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Phases of an action's latency. "total" is what the client observed; the
// others come from the server's ExecutedActionMetadata, when it fills it.
const (
	PhaseTotal     = "total"
	PhaseQueue     = "queue"
	PhaseInput     = "input_fetch"
	PhaseExecution = "execution"
	PhaseOutput    = "output_upload"
)

var phaseOrder = []string{PhaseTotal, PhaseQueue, PhaseInput, PhaseExecution, PhaseOutput}

// Summary is a latency distribution, in milliseconds.
type Summary struct {
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
	Mean float64 `json:"mean_ms"`
}

// Report is the outcome of one scenario.
type Report struct {
	Scenario string `json:"scenario"`
	// Requested is how many operations were asked for; Completed how many
	// finished and passed their check; Errors how many did not.
	Requested  int     `json:"requested"`
	Completed  int     `json:"completed"`
	Errors     int     `json:"errors"`
	FirstError string  `json:"first_error,omitempty"`
	Seconds    float64 `json:"seconds"`
	// PerSecond is completed operations per second of wall time.
	PerSecond float64 `json:"per_second"`
	// BytesPerSecond is set by scenarios that move data.
	BytesPerSecond float64            `json:"bytes_per_second,omitempty"`
	Latency        map[string]Summary `json:"latency"`
	// MachineCPU is the CPU time of the whole machine per completed
	// operation over the scenario's run (see MachineCPU: every process,
	// the load generator and anything else running included); nil if
	// /proc/stat cannot be read or nothing completed.
	MachineCPU *CPUPerOp `json:"machine_cpu_per_op,omitempty"`
	// FarmCPU is the CPU time per completed operation of the process tree
	// rooted at Options.FarmPID (see ProcessTreeCPU): for `paddock up`,
	// the whole farm with every sandbox. Nil without a FarmPID.
	FarmCPU *CPUPerOp `json:"farm_cpu_per_op,omitempty"`
	// FarmCPUByProcess splits FarmCPU by process name (argv[0], with
	// paddock's subcommand), each live process's own time apart from that
	// of the children it reaped ("NAME (reaped children)"): for `paddock
	// up`, the farm itself, the runner, the sandbox spawner, and the
	// sandboxes (the spawner's reaped children).
	FarmCPUByProcess map[string]*CPUPerOp `json:"farm_cpu_by_process,omitempty"`
	// FarmPeakRSSBytes is the farm process's peak resident memory
	// (VmHWM of Options.FarmPID, not its children's) when the run ended:
	// the peak since the farm started, so measure a fresh farm. 0 without
	// a FarmPID.
	FarmPeakRSSBytes int64 `json:"farm_peak_rss_bytes,omitempty"`
}

// Table renders reports as an aligned text table.
func Table(reports []*Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-16s %7s %6s %9s %10s  %-14s %9s %9s %9s %9s\n", "scenario", "done", "errors", "per sec", "MB/s", "phase", "p50 ms", "p90 ms", "p99 ms", "max ms")
	for _, r := range reports {
		mbs := ""
		if r.BytesPerSecond > 0 {
			mbs = fmt.Sprintf("%.1f", r.BytesPerSecond/1e6)
		}
		first := true
		for _, p := range phaseOrder {
			s, ok := r.Latency[p]
			if !ok {
				continue
			}
			if first {
				fmt.Fprintf(&b, "%-16s %7d %6d %9.1f %10s  ", r.Scenario, r.Completed, r.Errors, r.PerSecond, mbs)
			} else {
				fmt.Fprintf(&b, "%-16s %7s %6s %9s %10s  ", "", "", "", "", "")
			}
			first = false
			fmt.Fprintf(&b, "%-14s %9.1f %9.1f %9.1f %9.1f\n", p, s.P50, s.P90, s.P99, s.Max)
		}
		if first {
			fmt.Fprintf(&b, "%-16s %7d %6d %9.1f %10s\n", r.Scenario, r.Completed, r.Errors, r.PerSecond, mbs)
		}
		if r.FirstError != "" {
			fmt.Fprintf(&b, "  first error: %s\n", r.FirstError)
		}
		if r.FarmPeakRSSBytes > 0 {
			fmt.Fprintf(&b, "  farm peak resident memory: %.0f MB\n", float64(r.FarmPeakRSSBytes)/1e6)
		}
	}
	b.WriteString(cpuTable(reports))
	return b.String()
}

// cpuTable renders the CPU figures of the reports that have them, as a
// second table below the latencies.
func cpuTable(reports []*Report) string {
	var b strings.Builder
	cell := func(c *CPUPerOp) string {
		if c == nil {
			return fmt.Sprintf("%8s %8s %8s", "-", "-", "-")
		}
		return fmt.Sprintf("%8.1f %8.1f %8.1f", c.UserMs, c.SystemMs, c.TotalMs())
	}
	for _, r := range reports {
		if r.MachineCPU == nil && r.FarmCPU == nil {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\n%-16s %-26s   %s\n", "CPU ms per op", "machine (/proc/stat)", "farm (--farm-pid tree)")
			fmt.Fprintf(&b, "%-16s %8s %8s %8s   %8s %8s %8s\n", "scenario", "user", "system", "total", "user", "system", "total")
		}
		fmt.Fprintf(&b, "%-16s %s   %s\n", r.Scenario, cell(r.MachineCPU), cell(r.FarmCPU))
		names := make([]string, 0, len(r.FarmCPUByProcess))
		for name, c := range r.FarmCPUByProcess {
			if c.TotalMs() >= 0.05 {
				names = append(names, name)
			}
		}
		sort.Strings(names)
		for _, name := range names {
			fmt.Fprintf(&b, "  %-41s %s\n", name, cell(r.FarmCPUByProcess[name]))
		}
	}
	return b.String()
}

// recorder collects latencies from concurrent operations.
type recorder struct {
	scenario string
	want     int
	progress io.Writer
	start    time.Time
	cpu      *cpuMeter
	farmPID  int

	mu       sync.Mutex
	phases   map[string][]time.Duration
	errors   int
	firstErr string
	bytes    int64
	stop     chan struct{}
	stopped  chan struct{}
}

// newRecorder starts the clock and the CPU meter of one scenario's run.
func (c *Client) newRecorder(scenario string, want int) *recorder {
	r := &recorder{scenario: scenario, want: want, progress: c.opts.Progress, start: time.Now(), cpu: startCPUMeter(c.opts.FarmPID), farmPID: c.opts.FarmPID,
		phases: map[string][]time.Duration{}, stop: make(chan struct{}), stopped: make(chan struct{})}
	go r.showProgress()
	return r
}

func (r *recorder) showProgress() {
	defer close(r.stopped)
	if r.progress == nil {
		return
	}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			fmt.Fprint(r.progress, "\r\033[K")
			return
		case <-t.C:
			r.mu.Lock()
			done := len(r.phases[PhaseTotal])
			errs := r.errors
			r.mu.Unlock()
			rate := float64(done) / time.Since(r.start).Seconds()
			fmt.Fprintf(r.progress, "\r\033[K%s: %d/%d done, %d errors, %.1f/s", r.scenario, done, r.want, errs, rate)
		}
	}
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors++
	if r.firstErr == "" {
		r.firstErr = err.Error()
	}
}

func span(a, b *timestamppb.Timestamp) (time.Duration, bool) {
	if a == nil || b == nil || a.AsTime().IsZero() || b.AsTime().IsZero() {
		return 0, false
	}
	d := b.AsTime().Sub(a.AsTime())
	return d, d >= 0
}

func (r *recorder) ok(total time.Duration, md *repb.ExecutedActionMetadata) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases[PhaseTotal] = append(r.phases[PhaseTotal], total)
	if md == nil {
		return
	}
	for _, p := range []struct {
		name string
		a, b *timestamppb.Timestamp
	}{
		{PhaseQueue, md.QueuedTimestamp, md.WorkerStartTimestamp},
		{PhaseInput, md.InputFetchStartTimestamp, md.InputFetchCompletedTimestamp},
		{PhaseExecution, md.ExecutionStartTimestamp, md.ExecutionCompletedTimestamp},
		{PhaseOutput, md.OutputUploadStartTimestamp, md.OutputUploadCompletedTimestamp},
	} {
		if d, ok := span(p.a, p.b); ok {
			r.phases[p.name] = append(r.phases[p.name], d)
		}
	}
}

// okBytes records one operation that moved n bytes and has no action
// metadata.
func (r *recorder) okBytes(total time.Duration, n int64) {
	r.mu.Lock()
	r.bytes += n
	r.mu.Unlock()
	r.ok(total, nil)
}

func summarize(ds []time.Duration) Summary {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	at := func(q float64) float64 { return ms(ds[min(len(ds)-1, int(q*float64(len(ds))))]) }
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return Summary{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(ds[len(ds)-1]), Mean: ms(sum / time.Duration(len(ds)))}
}

func (r *recorder) report() *Report {
	close(r.stop)
	<-r.stopped
	r.mu.Lock()
	defer r.mu.Unlock()
	secs := time.Since(r.start).Seconds()
	rep := &Report{
		Scenario: r.scenario, Requested: r.want, Completed: len(r.phases[PhaseTotal]),
		Errors: r.errors, FirstError: r.firstErr, Seconds: secs, Latency: map[string]Summary{},
	}
	rep.PerSecond = float64(rep.Completed) / secs
	rep.MachineCPU, rep.FarmCPU, rep.FarmCPUByProcess = r.cpu.perOp(rep.Completed)
	if r.farmPID > 0 {
		rep.FarmPeakRSSBytes = peakRSS(r.farmPID)
	}
	if r.bytes > 0 {
		rep.BytesPerSecond = float64(r.bytes) / secs
	}
	for p, ds := range r.phases {
		if len(ds) > 0 {
			rep.Latency[p] = summarize(ds)
		}
	}
	return rep
}
