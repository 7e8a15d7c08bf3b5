package worker

import (
	"context"
	"testing"
	"time"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/internal/clock"
)

// TestMetricsStep: the step times each stage from the timestamps the
// steps inside it wrote; a stage an action never reached is not observed.
func TestMetricsStep(t *testing.T) {
	files, err := NewFileCache(FileCacheOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(files)
	t0 := time.Unix(1000, 0)
	at := func(ms int) *timestamppb.Timestamp {
		return timestamppb.New(t0.Add(time.Duration(ms) * time.Millisecond))
	}
	m.clock = clock.NewFake(t0.Add(100 * time.Millisecond))
	inner := ExecutorFunc(func(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
		md := j.Metadata
		md.InputFetchStartTimestamp, md.InputFetchCompletedTimestamp = at(10), at(30)
		md.ExecutionStartTimestamp, md.ExecutionCompletedTimestamp = at(30), at(90)
		return &repb.ExecuteResponse{}, nil
	})
	j := &Job{Metadata: &repb.ExecutedActionMetadata{WorkerStartTimestamp: at(0)}}
	if _, err := m.Step(inner).Execute(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mm := range f.Metric {
			if f.GetName() == "paddock_worker_stage_seconds" {
				got[mm.Label[0].GetValue()] = mm.Histogram.GetSampleSum()
			}
		}
		if f.GetName() == "paddock_worker_input_cache_hit_ratio" && f.Metric[0].Gauge.GetValue() != 1 {
			t.Errorf("hit ratio before any input: %v, want 1", f.Metric[0].Gauge.GetValue())
		}
	}
	want := map[string]float64{"fetch": 0.010, "input_root": 0.020, "run": 0.060, "total": 0.100}
	if len(got) != len(want) {
		t.Errorf("stages observed %v, want %v (no upload: it never happened)", got, want)
	}
	for k, v := range want {
		if d := got[k] - v; d > 1e-9 || d < -1e-9 {
			t.Errorf("stage %s: %v s, want %v", k, got[k], v)
		}
	}
}
