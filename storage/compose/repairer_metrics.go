package compose

import "github.com/prometheus/client_golang/prometheus"

// repairCollector reports a Repairer's counts at each scrape.
type repairCollector struct {
	r    *Repairer
	desc *prometheus.Desc
}

// Collector returns the Repairer's Prometheus metrics, labelled with
// mirror (its config path): repairs done, failed, and dropped because
// all slots were busy. A count of failures that keeps growing means a
// side is refusing copies; dropped ones are asked for again later.
func (r *Repairer) Collector(mirror string) prometheus.Collector {
	return &repairCollector{r: r, desc: prometheus.NewDesc("paddock_storage_mirror_repairs_total",
		"Copies of blobs and action results to the mirror side that lacked them, by result.",
		[]string{"result"}, prometheus.Labels{"mirror": mirror})}
}

func (c *repairCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *repairCollector) Collect(ch chan<- prometheus.Metric) {
	done, failed, dropped := c.r.Stats()
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(done), "done")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(failed), "failed")
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(dropped), "dropped")
}
