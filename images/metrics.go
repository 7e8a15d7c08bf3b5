package images

import "github.com/prometheus/client_golang/prometheus"

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
		lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_images_lookups_total",
			Help: "Rootfs requests, by whether the image was already cached and resolved.",
		}, []string{"result"}),
		pulls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_images_pulls_total",
			Help: "Image resolutions and pulls from a registry, by result.",
		}, []string{"result"}),
		pullSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "paddock_images_pull_seconds",
			Help:    "Time to resolve, download and unpack an image.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 9),
		}),
		pulledBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paddock_images_pulled_bytes_total",
			Help: "Compressed layer bytes downloaded from registries.",
		}),
		layers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paddock_images_layers_unpacked_total",
			Help: "Layers unpacked into the cache (pulled or loaded).",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "paddock_images_evictions_total",
			Help: "Images evicted from the cache to respect its size bound.",
		}),
		cachedBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "paddock_images_cached_bytes",
			Help: "Unpacked size of the cached layers.",
		}),
		imagesInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "paddock_images_in_use",
			Help: "Images held by at least one Rootfs.",
		}),
		accessChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "paddock_images_access_checks_total",
			Help: "Registry requests checking a tenant's access to a cached image, by result (allowed, denied, error).",
		}, []string{"result"}),
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
