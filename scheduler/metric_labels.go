package scheduler

import (
	"cmp"
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

// instanceLabels hands out the instance label of the counters and the
// histogram. Used under the scheduler's lock.
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
	kept := map[string]bool{}
	for _, n := range slices.Compact(names) {
		if len(kept) < maxInstanceLabels && len(n) <= maxInstanceLabel {
			kept[n] = true
		}
	}
	sums := map[[2]string]*queueSeries{}
	var out []*queueSeries
	for _, q := range qs {
		inst := q.Instance
		if !kept[inst] {
			inst = otherInstances
		}
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

// tenantOfExec names the tenant of the execution first named operation
// ("" when it is gone, or without a policy).
func (c *core) tenantOfExec(operation string) string {
	if e := c.execs[operation]; e != nil && e.queue != nil {
		return e.queue.tenant.name
	}
	return ""
}
