package runner

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/api/runnerpb"
	"github.com/paddock-build/paddock/internal/clock"
	"github.com/paddock-build/paddock/internal/prom"
)

// Metrics are the runner's Prometheus metrics about the sandboxes it runs:
// how long a sandbox takes to start, how actions end (timeouts, OOM kills,
// pids-limit hits), and the CPU and memory actions use. They are read from
// each RunResponse by a gRPC interceptor, a link in front of the Service,
// so the service itself stays free of them.
type Metrics struct {
	startSeconds prometheus.Histogram
	ends         *prometheus.CounterVec
	cpuSeconds   *prometheus.CounterVec
	peakMemory   prometheus.Histogram
	clock        clock.Clock
}

// NewMetrics returns the runner's metrics; register Collectors and install
// UnaryServerInterceptor on the runner's gRPC server.
func NewMetrics() *Metrics {
	return &Metrics{
		startSeconds: prom.Histogram("paddock_runner_sandbox_start_seconds",
			"Time from a Run request to the action's command starting in its sandbox (rootfs, id slot, spec, namespaces, cgroup).",
			prometheus.ExponentialBuckets(0.001, 2, 14)),
		ends: prom.CounterVec("paddock_runner_actions_total",
			"Actions run, by how they ended: exited, timeout, oom_killed, pids_limit, cancelled, error (the runner could not run it).", "end"),
		cpuSeconds: prom.CounterVec("paddock_runner_action_cpu_seconds_total",
			"CPU time used by actions in their sandboxes, by mode (user, system).", "mode"),
		peakMemory: prom.Histogram("paddock_runner_action_peak_memory_bytes",
			"Peak memory of each action's sandbox (its cgroup's, or the command's max RSS where the cgroup does not say).",
			prometheus.ExponentialBuckets(1<<20, 4, 9)),
		clock: clock.Real{},
	}
}

// Collectors are the metrics, to register on the role's registry.
func (m *Metrics) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.startSeconds, m.ends, m.cpuSeconds, m.peakMemory}
}

// UnaryServerInterceptor observes every Run call's response.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := m.clock.Now()
		resp, err := handler(ctx, req)
		if r, ok := resp.(*runnerpb.RunResponse); ok && err == nil {
			m.observe(start, r)
		} else if _, isRun := req.(*runnerpb.RunRequest); isRun {
			m.ends.WithLabelValues("error").Inc()
		}
		return resp, err
	}
}

func (m *Metrics) observe(start time.Time, r *runnerpb.RunResponse) {
	if r.ExecutionStart != nil {
		m.startSeconds.Observe(r.ExecutionStart.AsTime().Sub(start).Seconds())
	}
	m.ends.WithLabelValues(endOf(r)).Inc()
	if u := r.Usage; u != nil {
		m.cpuSeconds.WithLabelValues("user").Add(u.UserTime.AsDuration().Seconds())
		m.cpuSeconds.WithLabelValues("system").Add(u.SystemTime.AsDuration().Seconds())
		peak := u.PeakMemoryBytes
		if peak == 0 {
			peak = u.MaxRssBytes
		}
		if peak > 0 {
			m.peakMemory.Observe(float64(peak))
		}
	}
}

// endOf names how an action ended, the most specific reason first.
func endOf(r *runnerpb.RunResponse) string {
	switch {
	case r.OomKilled:
		return "oom_killed"
	case r.PidsLimitHit:
		return "pids_limit"
	case r.TimedOut:
		return "timeout"
	case r.Cancelled:
		return "cancelled"
	case r.StatusCode != 0:
		return "error"
	}
	return "exited"
}
