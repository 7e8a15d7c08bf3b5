package scheduler

import (
	"cmp"
	"slices"
)

// The instance label: a client names any instance it likes, and a series
// kept per name (the dispatch counter and the queue-wait histogram live as
// long as the process) would let one client grow the scheduler's memory
// and every scrape by running actions under ever new names. The first
// maxInstanceLabels names keep their own series; the rest share
// otherInstances.
const (
	maxInstanceLabels = 1000
	otherInstances    = "(other)"
)

// instanceLabels hands out the instance label of the counters and the
// histogram. Used under the scheduler's lock.
type instanceLabels map[string]bool

// label returns name's label, taking a place for it while there is one.
func (l instanceLabels) label(name string) string {
	if l[name] {
		return name
	}
	if len(l) >= maxInstanceLabels {
		return otherInstances
	}
	l[name] = true
	return name
}

// queueSeries is one series of the queued and running gauges.
type queueSeries struct {
	instance, platform string
	queued, running    int
}

// gaugeSeries sums the queues by instance label and platform: the first
// maxInstanceLabels instance names in order keep their own, the rest share
// otherInstances. Queues of two tenants with one instance name and
// platform make one series, as the gauges' labels cannot tell them apart.
func gaugeSeries(qs []QueueStatus) []queueSeries {
	var names []string
	for _, q := range qs {
		names = append(names, q.Instance)
	}
	slices.Sort(names)
	kept := instanceLabels{}
	for _, n := range slices.Compact(names) {
		kept.label(n)
	}
	sums := map[[2]string]*queueSeries{}
	var out []*queueSeries
	for _, q := range qs {
		inst := q.Instance
		if !kept[inst] {
			inst = otherInstances
		}
		key := [2]string{inst, platformString(q.Platform)}
		s := sums[key]
		if s == nil {
			s = &queueSeries{instance: key[0], platform: key[1]}
			sums[key] = s
			out = append(out, s)
		}
		s.queued += q.Queued
		s.running += q.Running
	}
	slices.SortFunc(out, func(a, b *queueSeries) int {
		return cmp.Or(cmp.Compare(a.instance, b.instance), cmp.Compare(a.platform, b.platform))
	})
	series := make([]queueSeries, len(out))
	for i, s := range out {
		series[i] = *s
	}
	return series
}
