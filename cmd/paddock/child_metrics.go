package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// childMetrics gathers the metrics of a child process (the runner that
// `paddock up` supervises) from its HTTP listener on a UNIX socket, so
// that `up` serves the whole farm's metrics on one /metrics. The child's Go
// runtime and process families are left out: they would collide with this
// process's own, and the runner's process is an internal detail of `up`.
// When the child is down (restarting), it contributes nothing. Merge it
// with mergeGatherers: both processes serve gRPC health, so some series
// (its RPC counters) exist in both.
type childMetrics struct {
	client *http.Client
}

func newChildMetrics(socket string) *childMetrics {
	return &childMetrics{client: &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

// Gather implements prometheus.Gatherer.
func (c *childMetrics) Gather() ([]*dto.MetricFamily, error) {
	resp, err := c.client.Get("http://runner/metrics")
	if err != nil {
		return nil, nil // the child is restarting; its metrics come back with it
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("runner /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("runner /metrics: %w", err)
	}
	out := make([]*dto.MetricFamily, 0, len(fams))
	for name, f := range fams {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// mergeGatherers gathers own, then adds the child's families and, in a
// family own has too, only the child's series whose labels own lacks
// (prometheus.Gatherers would report those as duplicates).
type mergeGatherers struct {
	own   prometheus.Gatherer
	child prometheus.Gatherer
}

// Gather implements prometheus.Gatherer.
func (m mergeGatherers) Gather() ([]*dto.MetricFamily, error) {
	fams, err := m.own.Gather()
	theirs, cerr := m.child.Gather()
	byName := make(map[string]*dto.MetricFamily, len(fams))
	for _, f := range fams {
		byName[f.GetName()] = f
	}
	for _, cf := range theirs {
		f := byName[cf.GetName()]
		if f == nil {
			fams = append(fams, cf)
			continue
		}
		if f.GetType() != cf.GetType() {
			continue
		}
		seen := make(map[string]bool, len(f.Metric))
		for _, mm := range f.Metric {
			seen[labelKey(mm)] = true
		}
		for _, mm := range cf.Metric {
			if !seen[labelKey(mm)] {
				f.Metric = append(f.Metric, mm)
			}
		}
	}
	sort.Slice(fams, func(i, j int) bool { return fams[i].GetName() < fams[j].GetName() })
	return fams, errors.Join(err, cerr)
}

// labelKey identifies a series within its family.
func labelKey(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.Label {
		b.WriteString(l.GetName())
		b.WriteByte(0)
		b.WriteString(l.GetValue())
		b.WriteByte(0)
	}
	return b.String()
}
