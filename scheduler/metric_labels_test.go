package scheduler

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/paddock-build/paddock/api/workerpb"
)

// A client names any instance it likes: past maxInstanceLabels names the
// counters and the histogram share one series, "(other)", and a name that
// has its own keeps it.
func TestInstanceLabelsAreBounded(t *testing.T) {
	m := newMetrics()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var fx effects
	for i := range maxInstanceLabels + 100 {
		fx.dispatch = append(fx.dispatch, workerMessage{msg: &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Assignment{
			Assignment: &workerpb.Assignment{InstanceName: fmt.Sprint("inst-", i), QueuedTimestamp: timestamppb.New(now)}}}})
	}
	// inst-0 again, after the bound is reached: still its own.
	fx.dispatch = append(fx.dispatch, fx.dispatch[0])
	m.observe(now, fx, func(string) string { return "" })
	counts := dispatchCounts(t, m)
	if len(counts) != maxInstanceLabels+1 || counts[otherInstances] != 100 || counts["inst-0"] != 2 {
		t.Fatalf("%d series, %v for %s and %v for inst-0; want %d, 100 and 2", len(counts), counts[otherInstances], otherInstances, counts["inst-0"], maxInstanceLabels+1)
	}
}

// One tenant of a policy takes at most half of the instance labels, so
// that its names cannot leave every other tenant's series "(other)"; a
// name longer than maxInstanceLabel bytes is "(other)" whoever sends it.
func TestATenantTakesAtMostHalfTheInstanceLabels(t *testing.T) {
	m := newMetrics()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var fx effects
	assign := func(op, instance string) {
		fx.dispatch = append(fx.dispatch, workerMessage{msg: &workerpb.SchedulerMessage{Kind: &workerpb.SchedulerMessage_Assignment{
			Assignment: &workerpb.Assignment{OperationName: op, InstanceName: instance, QueuedTimestamp: timestamppb.New(now)}}}})
	}
	for i := range maxInstanceLabels {
		assign("a", fmt.Sprint("team-a/", i))
	}
	assign("b", "team-b/main")
	assign("b", "team-b/"+strings.Repeat("x", maxInstanceLabel))
	m.observe(now, fx, func(op string) string { return "team-" + op })
	counts := dispatchCounts(t, m)
	if len(counts) != maxTenantInstanceLabels+2 || counts["team-b/main"] != 1 || counts[otherInstances] != maxInstanceLabels-maxTenantInstanceLabels+1 {
		t.Fatalf("%d series, team-b/main %v, %s %v; want %d, 1 and %d", len(counts), counts["team-b/main"], otherInstances, counts[otherInstances],
			maxTenantInstanceLabels+2, maxInstanceLabels-maxTenantInstanceLabels+1)
	}
}

// The queue gauges label a queue's instance as the counters do: past
// maxInstanceLabels names, or a tenant's maxTenantInstanceLabels, the
// rest share "(other)". An outside probe queued 1,000 names of one tenant
// and every other tenant's queue was summed into "(other)" (the gauges
// kept the first 1,000 names in sorted order). Two tenants' queues of one
// instance and platform make one series, which would otherwise be
// collected twice (an error that fails the whole scrape).
func TestGaugeSeriesSumQueues(t *testing.T) {
	h := newHarness(t, nil)
	s := &Scheduler{core: h.c, metrics: newMetrics()}
	pool := &workerpb.Property{Name: "Pool", Value: "big"}
	submit := func(tenant, instance, name string, routing ...*workerpb.Property) {
		qk := tenant + "\x00" + instance
		for _, p := range routing {
			qk += "\x00" + p.Name + "=" + p.Value
		}
		if _, err := h.c.Execute(h.now, submission{name: name, instance: instance, owner: tenant, action: actionDigest(name),
			cacheable: true, queueKey: qk, routing: routing}); err != nil {
			t.Fatal(err)
		}
	}
	submit("team-b", "zz-b", "b-first")
	for i := range maxInstanceLabels + 5 {
		submit("team-a", fmt.Sprintf("i%05d", i), fmt.Sprint("a", i))
	}
	submit("team-b", "i00000", "b-shared")
	submit("team-b", "i00000", "b-pool", pool)
	submit("team-c", "zz-c", "c-late")
	series := gaugeSeries(s.labelledQueues())
	byKey := map[[2]string]queueSeries{}
	for _, q := range series {
		key := [2]string{q.instance, q.platform}
		if _, dup := byKey[key]; dup {
			t.Fatalf("series %v twice: the scrape would fail", key)
		}
		byKey[key] = q
	}
	if len(series) != maxTenantInstanceLabels+4 {
		t.Errorf("%d series, want team-a's first %d names, (other), zz-b, zz-c and i00000's Pool=big", len(series), maxTenantInstanceLabels)
	}
	for _, inst := range []string{"zz-b", "zz-c"} {
		if q := byKey[[2]string{inst, ""}]; q.queued != 1 {
			t.Errorf("%s: %+v; want its own series: one tenant's names cannot push another's into %s", inst, q, otherInstances)
		}
	}
	if q := byKey[[2]string{"i00000", ""}]; q.queued != 2 {
		t.Errorf("i00000: %+v; want the two tenants' queues summed", q)
	}
	if q := byKey[[2]string{"i00000", "Pool=big"}]; q.queued != 1 {
		t.Errorf("i00000 Pool=big: %+v", q)
	}
	if q := byKey[[2]string{otherInstances, ""}]; q.queued != maxInstanceLabels+5-maxTenantInstanceLabels {
		t.Errorf("%s: %+v; want team-a's %d queues past its share", otherInstances, q, maxInstanceLabels+5-maxTenantInstanceLabels)
	}
}

// Platform values are the clients' too: a long one is "(other)", and past
// maxQueueSeries series the rest are summed into (other, other), once,
// whether or not that series is among the first.
func TestGaugeSeriesAreBoundedByPlatform(t *testing.T) {
	long := []*workerpb.Property{{Name: "Pool", Value: strings.Repeat("x", 60000)}}
	for _, withOther := range []bool{false, true} {
		var qs []QueueStatus
		total := 0
		if withOther {
			qs = append(qs, QueueStatus{Instance: otherInstances, Platform: long, Queued: 1}) // labelled (other, other) itself
			total++
		}
		for i := range maxQueueSeries + 500 {
			qs = append(qs, QueueStatus{Instance: "a", Platform: []*workerpb.Property{{Name: "Pool", Value: fmt.Sprintf("p%05d", i)}}, Queued: 1})
			total++
		}
		series := gaugeSeries(qs)
		if len(series) > maxQueueSeries+1 {
			t.Fatalf("%d series, want at most %d", len(series), maxQueueSeries+1)
		}
		seen, sum := map[[2]string]bool{}, 0
		for _, s := range series {
			key := [2]string{s.instance, s.platform}
			if seen[key] {
				t.Fatalf("series %v twice: the scrape would fail", key)
			}
			seen[key] = true
			if len(s.platform) > maxPlatformLabel {
				t.Fatalf("a platform label of %d bytes", len(s.platform))
			}
			sum += s.queued
		}
		if sum != total {
			t.Fatalf("the series count %d queued, want %d", sum, total)
		}
	}
}

// TestGaugeSeriesNeverEmpty: with no queue at all (an idle scheduler) the
// gauges still have a series, the default queue's at zero, so that an
// autoscaler summing them reads 0, not "no metric".
func TestGaugeSeriesNeverEmpty(t *testing.T) {
	if s := gaugeSeries(nil); len(s) != 1 || s[0] != (queueSeries{}) {
		t.Errorf("no queues: %+v; want one zero series for instance \"\", platform \"\"", s)
	}
	pool := []*workerpb.Property{{Name: "Pool", Value: "big"}}
	if s := gaugeSeries([]QueueStatus{{Platform: pool, Queued: 1}}); len(s) != 1 || s[0].platform != "Pool=big" {
		t.Errorf("one Pool=big queue: %+v; want its series alone", s)
	}
}

// dispatchCounts is m's dispatch counter by instance label.
func dispatchCounts(t *testing.T, m *metrics) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.dispatches)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			counts[s.GetLabel()[0].GetValue()] = s.GetCounter().GetValue()
		}
	}
	return counts
}
