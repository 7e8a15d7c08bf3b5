package bench_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/paddock-build/paddock/bench"
	"github.com/paddock-build/paddock/internal/farmtest"
)

func TestActionsCountsAreExact(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	// The farm runs in this process: its process tree is this test.
	c := bench.NewClient(f.Conn, bench.Options{Concurrency: 4, FarmPID: os.Getpid()})
	r, err := c.Actions(context.Background(), 25)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requested != 25 || r.Completed != 25 || r.Errors != 0 {
		t.Fatalf("report %+v", r)
	}
	if r.MachineCPU == nil || r.FarmCPU == nil || r.FarmCPU.TotalMs() <= 0 {
		t.Errorf("CPU per action: machine %+v, farm %+v; want both, the farm's above 0", r.MachineCPU, r.FarmCPU)
	}
	if got := f.Runner.Calls(); got != 25 {
		t.Fatalf("the farm ran %d actions, want 25 (salting must defeat caching and dedup)", got)
	}
	for _, p := range []string{bench.PhaseTotal, bench.PhaseQueue, bench.PhaseInput, bench.PhaseExecution, bench.PhaseOutput} {
		if s, ok := r.Latency[p]; !ok || s.Max < s.P50 {
			t.Errorf("phase %s missing or inconsistent: %+v", p, s)
		}
	}
	if table := bench.Table([]*bench.Report{r}); !strings.Contains(table, "execution") || !strings.Contains(table, "CPU ms per op") {
		t.Errorf("table lacks the phases or the CPU figures:\n%s", table)
	}
	// Without a farm pid, only the machine's figure.
	c = bench.NewClient(f.Conn, bench.Options{Concurrency: 4})
	if r, err = c.Actions(context.Background(), 5); err != nil || r.FarmCPU != nil || r.MachineCPU == nil {
		t.Errorf("without FarmPID: machine %+v, farm %+v, %v; want the machine's figure only", r.MachineCPU, r.FarmCPU, err)
	}
}

func TestInputsAndOutputsAreChecked(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := bench.NewClient(f.Conn, bench.Options{Concurrency: 2})
	ctx := context.Background()
	for _, cold := range []bool{true, false} {
		r, err := c.Inputs(ctx, 3, 1500, 64, cold)
		if err != nil || r.Completed != 3 || r.Errors != 0 {
			t.Fatalf("inputs cold=%v: %+v, %v", cold, r, err)
		}
	}
	r, err := c.Outputs(ctx, 2, 50, 50*1024)
	if err != nil || r.Completed != 2 || r.Errors != 0 {
		t.Fatalf("outputs: %+v, %v", r, err)
	}
}

func TestCASScenario(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := bench.NewClient(f.Conn, bench.Options{Concurrency: 4})
	reps, err := c.CAS(context.Background(), 6, 3<<20, 3)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range reps {
		if r.Completed != r.Requested || r.Errors != 0 {
			t.Fatalf("%s: %+v", r.Scenario, r)
		}
	}
	if reps[0].BytesPerSecond <= 0 || reps[1].BytesPerSecond <= 0 {
		t.Fatal("no throughput reported for upload/download")
	}
}

// A failing farm is reported, never counted as success.
func TestServerErrorsAreReported(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	f.Runner.Err = errors.New("runner is gone")
	c := bench.NewClient(f.Conn, bench.Options{Concurrency: 2})
	r, err := c.Actions(context.Background(), 5)
	if err != nil {
		t.Fatal(err)
	}
	if r.Completed != 0 || r.Errors != 5 || !strings.Contains(r.FirstError, "runner") {
		t.Fatalf("report %+v: want 5 errors naming the runner", r)
	}
	// An action the farm refuses (unknown platform property) is an error
	// too, with the server's message.
	c = bench.NewClient(f.Conn, bench.Options{Platform: map[string]string{"NoSuchProperty": "x"}})
	f.Runner.Err = nil
	r, err = c.Actions(context.Background(), 2)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 2 || !strings.Contains(r.FirstError, "NoSuchProperty") {
		t.Fatalf("report %+v: want the refusal naming the property", r)
	}
}

// The cached scenario's Executes are all answered from the action cache:
// the farm runs nothing, each result is the stored one, and with a farm
// pid the report has its peak resident memory.
func TestCachedHitsRunNothing(t *testing.T) {
	f := farmtest.Start(t, farmtest.Options{})
	c := bench.NewClient(f.Conn, bench.Options{Concurrency: 4, FarmPID: os.Getpid()})
	r, err := c.Cached(context.Background(), 20, 300)
	if err != nil {
		t.Fatal(err)
	}
	if r.Completed != 20 || r.Errors != 0 {
		t.Fatalf("report %+v", r)
	}
	if got := f.Runner.Calls(); got != 0 {
		t.Fatalf("the farm ran %d actions; every Execute should have been a cache hit", got)
	}
	if r.FarmPeakRSSBytes <= 0 || !strings.Contains(bench.Table([]*bench.Report{r}), "farm peak resident memory") {
		t.Errorf("peak resident memory %d; want it reported", r.FarmPeakRSSBytes)
	}
}
