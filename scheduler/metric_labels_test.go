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

// The gauges sum queues by instance label and platform: past the bound
// into "(other)", and two tenants' queues of one instance and platform into
// one series, which would otherwise be collected twice (an error that
// fails the whole scrape).
func TestGaugeSeriesSumQueues(t *testing.T) {
	pool := []*workerpb.Property{{Name: "Pool", Value: "big"}}
	var qs []QueueStatus
	for i := range maxInstanceLabels + 5 {
		qs = append(qs, QueueStatus{Instance: fmt.Sprintf("i%05d", i), Queued: 1, Running: 2})
	}
	qs = append(qs, QueueStatus{Instance: "i00000", Queued: 10}, QueueStatus{Instance: "i00000", Platform: pool, Queued: 7})
	series := gaugeSeries(qs)
	if len(series) != maxInstanceLabels+2 {
		t.Fatalf("%d series, want %d", len(series), maxInstanceLabels+2)
	}
	byKey := map[[2]string]queueSeries{}
	for _, s := range series {
		byKey[[2]string{s.instance, s.platform}] = s
	}
	if s := byKey[[2]string{"i00000", ""}]; s.queued != 11 || s.running != 2 {
		t.Errorf("i00000: %+v; want the two tenants' queues summed", s)
	}
	if s := byKey[[2]string{"i00000", "Pool=big"}]; s.queued != 7 {
		t.Errorf("i00000 Pool=big: %+v", s)
	}
	if s := byKey[[2]string{otherInstances, ""}]; s.queued != 5 || s.running != 10 {
		t.Errorf("%s: %+v; want the 5 queues past the bound", otherInstances, s)
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
