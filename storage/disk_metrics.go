package storage

import "github.com/prometheus/client_golang/prometheus"

// diskCollector reports a DiskBlobStore's size and evictions from its
// Stats at each scrape.
type diskCollector struct {
	s                     *DiskBlobStore
	bytes, blobs, evicted *prometheus.Desc
}

// Collector returns the store's Prometheus metrics: bytes (as counted
// against MaxBytes: diskCost) and blobs stored, blobs evicted since
// start, and blobs refused for want of room (disk_refusals.go).
func (s *DiskBlobStore) Collector() prometheus.Collector {
	return &diskCollector{
		s:       s,
		bytes:   prometheus.NewDesc("paddock_storage_cas_stored_bytes", "Bytes of disk the blobs in the disk CAS take, as counted against its max_bytes: each file in whole filesystem blocks, plus its inode.", nil, nil),
		blobs:   prometheus.NewDesc("paddock_storage_cas_stored_blobs", "Blobs in the disk CAS.", nil, nil),
		evicted: prometheus.NewDesc("paddock_storage_cas_evictions_total", "Blobs evicted from the disk CAS to respect its size bound.", nil, nil),
	}
}

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.blobs
	ch <- c.evicted
	c.s.refusals.Describe(ch)
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	used, blobs, evicted := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(used))
	ch <- prometheus.MustNewConstMetric(c.blobs, prometheus.GaugeValue, float64(blobs))
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(evicted))
	c.s.refusals.Collect(ch)
}
