package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// childMetrics gathers the metrics of a child process (the runner that
// `paddock up` supervises) from its HTTP listener on a UNIX socket, so
// that `up` serves the whole farm's metrics on one /metrics. The child's Go
// runtime and process families are left out: they would collide with this
// process's own, and the runner's process is an internal detail of `up`.
// When the child is down (restarting), it contributes nothing.
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
