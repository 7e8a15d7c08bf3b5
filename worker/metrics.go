package worker

import (
	"context"

	repb "github.com/bazelbuild/remote-apis/build/bazel/remote/execution/v2"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/prom"
)

// Metrics are the worker's Prometheus metrics: how long each stage of an
// action takes, and how well the file cache serves inputs. The stage
// durations come from a step in the chain (Step, for Options.Steps) that
// reads the timestamps the other steps wrote into the action's metadata;
// the cache figures are read from the FileCache when scraped. Register
// Metrics itself: it is a prometheus.Collector.
type Metrics struct {
	stageSeconds *prometheus.HistogramVec // stage
	files        *FileCache
	clock        clock.Clock

	links, fetched, ratio, bytes *prometheus.Desc
}

// NewMetrics returns the worker's metrics over its file cache.
func NewMetrics(files *FileCache) *Metrics {
	return &Metrics{
		stageSeconds: prom.HistogramVec("paddock_worker_stage_seconds",
			"Time each action spends in a stage on the worker: fetch, input_root, run, upload, and total.",
			prometheus.ExponentialBuckets(0.0005, 4, 11), "stage"),
		files: files,
		clock: clock.Real{},
		links: prometheus.NewDesc("paddock_worker_input_files_linked_total",
			"Input files linked into input roots.", nil, nil),
		fetched: prometheus.NewDesc("paddock_worker_file_cache_fetches_total",
			"Files fetched into the worker's file cache (misses, and files fetched ahead of their link).", nil, nil),
		ratio: prometheus.NewDesc("paddock_worker_input_cache_hit_ratio",
			"Share of input files linked without a fetch into the file cache, since start (1 before any input).", nil, nil),
		bytes: prometheus.NewDesc("paddock_worker_file_cache_bytes",
			"Bytes held by the worker's file cache.", nil, nil),
	}
}

// Step is the chain link that times the stages of each action.
func (m *Metrics) Step(next Executor) Executor {
	return ExecutorFunc(func(ctx context.Context, j *Job) (*repb.ExecuteResponse, error) {
		resp, err := next.Execute(ctx, j)
		md := j.Metadata
		end := timestamppb.New(m.clock.Now())
		m.observe("fetch", md.WorkerStartTimestamp, md.InputFetchStartTimestamp)
		m.observe("input_root", md.InputFetchStartTimestamp, md.InputFetchCompletedTimestamp)
		m.observe("run", md.ExecutionStartTimestamp, md.ExecutionCompletedTimestamp)
		m.observe("upload", md.OutputUploadStartTimestamp, md.OutputUploadCompletedTimestamp)
		m.observe("total", md.WorkerStartTimestamp, end)
		return resp, err
	})
}

// observe records a stage that has both ends (an action that failed early
// has no later stages).
func (m *Metrics) observe(stage string, from, to *timestamppb.Timestamp) {
	if from != nil && to != nil {
		m.stageSeconds.WithLabelValues(stage).Observe(to.AsTime().Sub(from.AsTime()).Seconds())
	}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	m.stageSeconds.Describe(ch)
	ch <- m.links
	ch <- m.fetched
	ch <- m.ratio
	ch <- m.bytes
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.stageSeconds.Collect(ch)
	links, fetched := m.files.Counts()
	bytes, _ := m.files.Stats()
	ratio := 1.0
	if links > 0 {
		ratio = max(0, 1-float64(fetched)/float64(links))
	}
	ch <- prometheus.MustNewConstMetric(m.links, prometheus.CounterValue, float64(links))
	ch <- prometheus.MustNewConstMetric(m.fetched, prometheus.CounterValue, float64(fetched))
	ch <- prometheus.MustNewConstMetric(m.ratio, prometheus.GaugeValue, ratio)
	ch <- prometheus.MustNewConstMetric(m.bytes, prometheus.GaugeValue, float64(bytes))
}
