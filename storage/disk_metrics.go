package storage

import (
	"maps"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
)

// diskCollector reports the size, evictions and refusals of the disk CAS
// in a store at each scrape: the store itself, the disk cache in front of
// another (CacheDisk), or, partitioned by tenant, each partition opened
// so far, labelled with its name. Under an auth policy the disk CAS is
// partitioned, and its metrics had not been reported at all.
type diskCollector struct {
	cas                             BlobStore
	partitioned                     bool
	bytes, blobs, evicted, refusals *prometheus.Desc
}

// CacheDisk is a store with a disk cache in front of another
// (compose.CachedBlobStore): its metrics are the cache's.
type CacheDisk interface {
	Cache() *DiskBlobStore
}

// Collector returns the store's Prometheus metrics, unlabelled: bytes (as
// counted against MaxBytes: diskCost) and blobs stored, blobs evicted
// since start, and blobs refused for want of room (disk_refusals.go).
func (s *DiskBlobStore) Collector() prometheus.Collector { return DiskCollector("", s) }

// DiskCollector returns the metrics of the disk CAS in cas (a
// DiskBlobStore, a CacheDisk, or a PartitionedBlobStore of either; none
// for other stores), labelled store (its place in a backend tree, when
// not "") and, when partitioned, partition. Each store of a tree has a
// collector of its own, told apart by store.
func DiskCollector(store string, cas BlobStore) prometheus.Collector {
	var constLabels prometheus.Labels
	if store != "" {
		constLabels = prometheus.Labels{"store": store}
	}
	_, partitioned := cas.(*PartitionedBlobStore)
	var labels []string
	if partitioned {
		labels = []string{"partition"}
	}
	desc := func(name, help string, more ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append(slices.Clone(labels), more...), constLabels)
	}
	return &diskCollector{
		cas: cas, partitioned: partitioned,
		bytes:   desc("paddock_storage_cas_stored_bytes", "Bytes of disk the blobs in the disk CAS take, as counted against its max_bytes: each file in whole filesystem blocks, plus its inode."),
		blobs:   desc("paddock_storage_cas_stored_blobs", "Blobs in the disk CAS."),
		evicted: desc("paddock_storage_cas_evictions_total", "Blobs evicted from the disk CAS to respect its size bound."),
		refusals: desc("paddock_storage_cas_disk_refusals_total",
			"Blobs the disk CAS refused (RESOURCE_EXHAUSTED) for want of room, by reason: disk_full (the filesystem said ENOSPC or EDQUOT), disk_kept_free (other files leave only the room kept free for the farm), uploads_in_flight (uploads in progress hold all of max_bytes), larger_than_bound (the blob alone is larger than max_bytes).",
			"reason"),
	}
}

func (c *diskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.blobs
	ch <- c.evicted
	ch <- c.refusals
}

func (c *diskCollector) Collect(ch chan<- prometheus.Metric) {
	if !c.partitioned {
		if disk := diskOf(c.cas); disk != nil {
			c.collect(ch, disk)
		}
		return
	}
	opened := c.cas.(*PartitionedBlobStore).opened()
	for _, name := range slices.Sorted(maps.Keys(opened)) {
		if disk := diskOf(opened[name]); disk != nil {
			c.collect(ch, disk, name)
		}
	}
}

// collect sends disk's metrics, labelled partition (one value, or none).
func (c *diskCollector) collect(ch chan<- prometheus.Metric, disk *DiskBlobStore, partition ...string) {
	used, blobs, evicted := disk.Stats()
	ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(used), partition...)
	ch <- prometheus.MustNewConstMetric(c.blobs, prometheus.GaugeValue, float64(blobs), partition...)
	ch <- prometheus.MustNewConstMetric(c.evicted, prometheus.CounterValue, float64(evicted), partition...)
	for _, r := range refusalReasons {
		ch <- prometheus.MustNewConstMetric(c.refusals, prometheus.CounterValue, float64(disk.refusals[r].Load()), append(partition, string(r))...)
	}
}

// diskOf is the disk CAS of s, or nil when it has none.
func diskOf(s BlobStore) *DiskBlobStore {
	switch s := s.(type) {
	case *DiskBlobStore:
		return s
	case CacheDisk:
		return s.Cache()
	}
	return nil
}
