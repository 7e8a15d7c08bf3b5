package images

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/paddock-build/paddock/internal/prom"
)

// metrics are the cache's Prometheus collectors. They always exist, so the
// code never checks for nil; they are registered (once New has succeeded)
// only when Options.Metrics names a registry.
type metrics struct {
	lookups     *prometheus.CounterVec // result: hit, miss
	pulls       *prometheus.CounterVec // result: ok, error
	pullSeconds prometheus.Histogram
	pulledBytes prometheus.Counter
	layers      prometheus.Counter
	evictions   prometheus.Counter
	cachedBytes prometheus.Gauge
	imagesInUse prometheus.Gauge
	// accessChecks counts registry requests that checked a tenant's access
	// to a cached image (not the remembered successes).
	accessChecks *prometheus.CounterVec // result: allowed, denied, error
}

func newMetrics() *metrics {
	m := &metrics{
		lookups: prom.CounterVec("paddock_images_lookups_total",
			"Rootfs requests, by whether the image was already cached and resolved.", "result"),
		pulls: prom.CounterVec("paddock_images_pulls_total",
			"Image resolutions and pulls from a registry, by result.", "result"),
		pullSeconds: prom.Histogram("paddock_images_pull_seconds",
			"Time to resolve, download and unpack an image.",
			prometheus.ExponentialBuckets(0.01, 4, 9)),
		pulledBytes: prom.Counter("paddock_images_pulled_bytes_total",
			"Compressed layer bytes downloaded from registries."),
		layers: prom.Counter("paddock_images_layers_unpacked_total",
			"Layers unpacked into the cache (pulled or loaded)."),
		evictions: prom.Counter("paddock_images_evictions_total",
			"Images evicted from the cache to respect its size bound."),
		cachedBytes: prom.Gauge("paddock_images_cached_bytes",
			"Unpacked size of the cached layers."),
		imagesInUse: prom.Gauge("paddock_images_in_use",
			"Images held by at least one Rootfs."),
		accessChecks: prom.CounterVec("paddock_images_access_checks_total",
			"Registry requests checking a tenant's access to a cached image, by result (allowed, denied, error).", "result"),
	}
	return m
}

func (m *metrics) register(reg *prometheus.Registry) error {
	for _, c := range []prometheus.Collector{m.lookups, m.pulls, m.pullSeconds, m.pulledBytes, m.layers, m.evictions, m.cachedBytes, m.imagesInUse, m.accessChecks} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}
