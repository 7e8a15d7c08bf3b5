package scheduler

import (
	"cmp"
	"maps"
	"slices"
)

// The instance label: a client names any instance it likes, and a series
// kept per name (the dispatch counter and the queue-wait histogram live as
// long as the process) would let one client grow the scheduler's memory
// and every scrape by running actions under ever new names. The first
// maxInstanceLabels names keep their own series, and the rest share
// otherInstances; so do names longer than maxInstanceLabel bytes, and
// with a policy a tenant's names past maxTenantInstanceLabels. One
// tenant's 1,100 names of 1 KB took every label, for good, and made
// each scrape 15 MB; the other tenants' series were all "(other)".
const (
	maxInstanceLabels       = 1000
	maxTenantInstanceLabels = maxInstanceLabels / 2
	maxInstanceLabel        = 256
	otherInstances          = "(other)"
)

// The platform label of the queue gauges is the clients' too: routing
// property values are theirs to choose. A platform longer than
// maxPlatformLabel bytes is labelled otherPlatforms, and past
// maxQueueSeries series the rest are summed in one, labelled
// (other, other): a scrape stays within a few megabytes whatever the
// clients queue (2,001 series of at most 1 KiB of instance name and
// 256 bytes of platform).
const (
	maxPlatformLabel = 256
	otherPlatforms   = "(other)"
	maxQueueSeries   = 2000
)

// instanceLabels hands out the instance label of the counters, the
// histogram and the queue gauges: a name takes its place when it is
// first dispatched or seen queued by a scrape, and keeps it. Used under the
// scheduler's lock.
type instanceLabels struct {
	names    map[string]bool
	byTenant map[string]int // labels taken by each tenant of a policy
}

func newInstanceLabels() *instanceLabels {
	return &instanceLabels{names: map[string]bool{}, byTenant: map[string]int{}}
}

// label returns the label of instance name, for an action of tenant
// ("" without a policy), taking a place for it while there is one.
func (l *instanceLabels) label(tenant, name string) string {
	if l.names[name] {
		return name
	}
	if len(l.names) >= maxInstanceLabels || len(name) > maxInstanceLabel ||
		(tenant != "" && l.byTenant[tenant] >= maxTenantInstanceLabels) {
		return otherInstances
	}
	l.names[name] = true
	if tenant != "" {
		l.byTenant[tenant]++
	}
	return name
}

// queueSeries is one series of the queued and running gauges.
type queueSeries struct {
	instance, platform string
	queued, running    int
}

// gaugeSeries sums the queues by instance label and platform: queues
// whose names share a label (otherInstances), and two tenants' queues of
// one instance name and platform, make one series, as the gauges' labels
// cannot tell them apart. qs are named by their labels already
// (Scheduler.labelledQueues).
func gaugeSeries(qs []QueueStatus) []queueSeries {
	sums := map[[2]string]*queueSeries{}
	var out []*queueSeries
	for _, q := range qs {
		inst := q.Instance
		platform := platformString(q.Platform)
		if len(platform) > maxPlatformLabel {
			platform = otherPlatforms
		}
		key := [2]string{inst, platform}
		s := sums[key]
		if s == nil {
			s = &queueSeries{instance: key[0], platform: key[1]}
			sums[key] = s
			out = append(out, s)
		}
		s.queued += q.Queued
		s.running += q.Running
	}
	if len(out) == 0 {
		// No queue at all: the default queue's series, at zero, so that the
		// family never goes empty. An autoscaler summing it (the workers'
		// HPA) then reads 0 and scales down, where no series at all reads
		// as no metric and holds the replicas where they are.
		out = append(out, &queueSeries{})
	}
	slices.SortFunc(out, compareSeries)
	if len(out) > maxQueueSeries {
		out = foldSeries(out, sums)
	}
	series := make([]queueSeries, len(out))
	for i, s := range out {
		series[i] = *s
	}
	return series
}

func compareSeries(a, b *queueSeries) int {
	return cmp.Or(cmp.Compare(a.instance, b.instance), cmp.Compare(a.platform, b.platform))
}

// foldSeries keeps the first maxQueueSeries of the sorted series and sums
// the rest into the (other, other) one, which may be among them already.
func foldSeries(out []*queueSeries, sums map[[2]string]*queueSeries) []*queueSeries {
	rest := sums[[2]string{otherInstances, otherPlatforms}]
	if rest == nil {
		rest = &queueSeries{instance: otherInstances, platform: otherPlatforms}
	}
	kept := make([]*queueSeries, 0, maxQueueSeries+1)
	for i, s := range out {
		switch {
		case s == rest:
		case i < maxQueueSeries:
			kept = append(kept, s)
		default:
			rest.queued += s.queued
			rest.running += s.running
		}
	}
	kept = append(kept, rest)
	slices.SortFunc(kept, compareSeries)
	return kept
}

// labelledQueues lists the queues as Queues does, each named by its
// instance label. A queue's name takes a label as a dispatch's does, under
// the tenant's share: the gauges had kept the first 1,000 names in sorted
// order, and one tenant's 1,000 queued names put every other tenant's
// queues in "(other)".
func (s *Scheduler) labelledQueues() []QueueStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Names take their places in order, not in the map's: which of a
	// tenant's names keep theirs does not change from scrape to scrape.
	qs := slices.SortedFunc(maps.Values(s.core.queues), func(a, b *queue) int {
		return cmp.Or(cmp.Compare(a.instance, b.instance), cmp.Compare(a.tenant.name, b.tenant.name))
	})
	labels := make(map[*queue]string, len(qs))
	for _, q := range qs {
		labels[q] = s.metrics.instances.label(q.tenant.name, q.instance)
	}
	return s.queuesLocked(func(q *queue) string { return labels[q] })
}

// tenantOfExec names the tenant of the execution first named operation
// ("" when it is gone, or without a policy).
func (c *core) tenantOfExec(operation string) string {
	if e := c.execs[operation]; e != nil && e.queue != nil {
		return e.queue.tenant.name
	}
	return ""
}
