package scheduler

import (
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/paddock-build/paddock/api/workerpb"
	"github.com/paddock-build/paddock/internal/prom"
)

// metrics are the scheduler's Prometheus collectors. The counters and the
// histogram are updated as the core's effects are applied; the gauges
// (queued and running actions per queue, workers by state) are read from
// the core when scraped, so they are never out of step with it. They
// always exist; Scheduler.Collector exposes them for registration.
type metrics struct {
	queueWait  *prometheus.HistogramVec // instance
	dispatches *prometheus.CounterVec   // instance
	retries    prometheus.Counter
	executes   *prometheus.CounterVec // instance, outcome
	instances  *instanceLabels        // their instance labels (metric_labels.go)

	queued        *prometheus.Desc
	running       *prometheus.Desc
	workers       *prometheus.Desc
	journalFailed *prometheus.Desc
}

// workerStates are the values of paddock_scheduler_workers's state label,
// every one reported (zero included) at each scrape. A connected worker
// that said it cannot run actions (its runner or storage is down) is
// paused, not idle or busy: counted idle, a farm whose every worker was
// paused looked like one with idle workers and a queue that never moved.
var workerStates = []string{"idle", "busy", "paused", "draining", "leaving", "disconnected"}

func newMetrics() *metrics {
	return &metrics{
		queueWait: prom.HistogramVec("paddock_scheduler_queue_wait_seconds",
			"Time from an execution's queueing to its dispatch to a worker, by instance name.",
			prometheus.ExponentialBuckets(0.001, 4, 10), "instance"),
		dispatches: prom.CounterVec("paddock_scheduler_dispatches_total",
			"Executions handed to a worker (retries included), by instance name.", "instance"),
		retries: prom.Counter("paddock_scheduler_retries_total",
			"Executions requeued because their worker was lost or could not run them."),
		executes: prom.CounterVec("paddock_scheduler_executes_total",
			"Execute requests accepted, by instance name and outcome: cache_hit (answered from the action cache), joined (merged into an identical execution in flight) or queued.",
			"instance", "outcome"),
		queued: prometheus.NewDesc("paddock_scheduler_queued_actions",
			"Executions waiting for a worker, by queue (instance name and routing platform).", []string{"instance", "platform"}, nil),
		running: prometheus.NewDesc("paddock_scheduler_running_actions",
			"Executions on a worker, by queue (instance name and routing platform).", []string{"instance", "platform"}, nil),
		workers: prometheus.NewDesc("paddock_scheduler_workers",
			"Known workers, by state (idle, busy, paused: connected but unable to run actions, draining, leaving, disconnected).", []string{"state"}, nil),
		journalFailed: prometheus.NewDesc("paddock_scheduler_journal_failed",
			"1 once the scheduler's journal could not be written (a full disk, say): it refuses new work until restarted; 0 otherwise, and without a journal.", nil, nil),
		instances: newInstanceLabels(),
	}
}

// observe records the assignments among a batch of effects; tenantOf
// names the tenant of an operation. Called under the scheduler's lock.
func (m *metrics) observe(now time.Time, fx effects, tenantOf func(operation string) string) {
	for _, d := range fx.dispatch {
		a := d.msg.GetAssignment()
		if a == nil {
			continue
		}
		inst := m.instances.label(tenantOf(a.OperationName), a.InstanceName)
		m.dispatches.WithLabelValues(inst).Inc()
		m.queueWait.WithLabelValues(inst).Observe(now.Sub(a.QueuedTimestamp.AsTime()).Seconds())
	}
	m.retries.Add(float64(fx.retries))
}

// The outcomes of an accepted Execute, paddock_scheduler_executes_total's
// outcome label. Without them the share of Executes the action cache
// answered (what a farm's operators watch first) could not be told: a
// hit is never dispatched, and the action cache's own GetActionResult
// counts leave out every Execute that found its result there.
const (
	outcomeCacheHit = "cache_hit"
	outcomeJoined   = "joined"
	outcomeQueued   = "queued"
)

// executed counts an accepted Execute of tenant under instance. Called
// under the scheduler's lock.
func (m *metrics) executed(tenant, instance, outcome string) {
	m.executes.WithLabelValues(m.instances.label(tenant, instance), outcome).Inc()
}

// Collector returns the scheduler's Prometheus metrics, to register on the
// role's registry.
func (s *Scheduler) Collector() prometheus.Collector { return (*schedulerCollector)(s) }

type schedulerCollector Scheduler

func (c *schedulerCollector) Describe(ch chan<- *prometheus.Desc) {
	m := c.metrics
	m.queueWait.Describe(ch)
	m.dispatches.Describe(ch)
	m.retries.Describe(ch)
	m.executes.Describe(ch)
	ch <- m.queued
	ch <- m.running
	ch <- m.workers
	ch <- m.journalFailed
}

func (c *schedulerCollector) Collect(ch chan<- prometheus.Metric) {
	s := (*Scheduler)(c)
	m := s.metrics
	m.queueWait.Collect(ch)
	m.dispatches.Collect(ch)
	m.retries.Collect(ch)
	m.executes.Collect(ch)
	for _, q := range gaugeSeries(s.labelledQueues()) {
		ch <- prometheus.MustNewConstMetric(m.queued, prometheus.GaugeValue, float64(q.queued), q.instance, q.platform)
		ch <- prometheus.MustNewConstMetric(m.running, prometheus.GaugeValue, float64(q.running), q.instance, q.platform)
	}
	byState := map[string]int{}
	for _, w := range s.Workers() {
		st := w.State
		if w.Paused && (st == "idle" || st == "busy") {
			st = "paused"
		}
		byState[st]++
	}
	for _, st := range workerStates {
		ch <- prometheus.MustNewConstMetric(m.workers, prometheus.GaugeValue, float64(byState[st]), st)
	}
	failed := 0.0
	if s.JournalFailed() {
		failed = 1
	}
	ch <- prometheus.MustNewConstMetric(m.journalFailed, prometheus.GaugeValue, failed)
}

// platformString is a platform as NAME=VALUE pairs joined by commas, in
// the order given (the scheduler keeps them sorted).
func platformString(ps []*workerpb.Property) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Name + "=" + p.Value
	}
	return strings.Join(parts, ",")
}
