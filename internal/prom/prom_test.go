package prom

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestDefinitions checks that each constructor gives the metric the name,
// help, labels and buckets it was given, as the exposition format shows.
func TestDefinitions(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := Counter("paddock_test_things_total", "Things.")
	cv := CounterVec("paddock_test_results_total", "Results.", "result")
	g := Gauge("paddock_test_bytes", "Bytes.")
	h := Histogram("paddock_test_seconds", "Seconds.", []float64{1, 2})
	hv := HistogramVec("paddock_test_stage_seconds", "Stage seconds.", []float64{1}, "stage")
	reg.MustRegister(c, cv, g, h, hv)
	c.Inc()
	cv.WithLabelValues("ok").Add(2)
	g.Set(3)
	h.Observe(1.5)
	hv.WithLabelValues("run").Observe(0.5)
	want := `# HELP paddock_test_bytes Bytes.
# TYPE paddock_test_bytes gauge
paddock_test_bytes 3
# HELP paddock_test_results_total Results.
# TYPE paddock_test_results_total counter
paddock_test_results_total{result="ok"} 2
# HELP paddock_test_seconds Seconds.
# TYPE paddock_test_seconds histogram
paddock_test_seconds_bucket{le="1"} 0
paddock_test_seconds_bucket{le="2"} 1
paddock_test_seconds_bucket{le="+Inf"} 1
paddock_test_seconds_sum 1.5
paddock_test_seconds_count 1
# HELP paddock_test_stage_seconds Stage seconds.
# TYPE paddock_test_stage_seconds histogram
paddock_test_stage_seconds_bucket{stage="run",le="1"} 1
paddock_test_stage_seconds_bucket{stage="run",le="+Inf"} 1
paddock_test_stage_seconds_sum{stage="run"} 0.5
paddock_test_stage_seconds_count{stage="run"} 1
# HELP paddock_test_things_total Things.
# TYPE paddock_test_things_total counter
paddock_test_things_total 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}
