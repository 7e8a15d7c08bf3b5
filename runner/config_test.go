package runner

import (
	"testing"
)

// TestHostLimits: the memory defaults that depend on the host.
func TestHostLimits(t *testing.T) {
	const gib = 1 << 30
	for _, tc := range []struct {
		name                 string
		mod                  func(*Config)
		cpus                 int
		wantDefault, wantMax int64
		wantConcurrency      int
	}{
		{"host memory / CPUs", nil, 4, 4 * gib, 16 * gib, 4},
		{"host memory / concurrency", func(c *Config) { c.Concurrency = 8 }, 4, 2 * gib, 16 * gib, 8},
		{"explicit default", func(c *Config) { c.DefaultMemoryLimit = 3 * gib }, 4, 3 * gib, 16 * gib, 4},
		{"default capped by max", func(c *Config) { c.MaxMemoryLimit = 1 * gib }, 2, 1 * gib, 1 * gib, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			got := cfg.withHostLimits(16*gib, tc.cpus)
			if got.DefaultMemoryLimit != tc.wantDefault || got.MaxMemoryLimit != tc.wantMax || got.Concurrency != tc.wantConcurrency {
				t.Errorf("default %d max %d concurrency %d, want %d %d %d", got.DefaultMemoryLimit, got.MaxMemoryLimit, got.Concurrency,
					tc.wantDefault, tc.wantMax, tc.wantConcurrency)
			}
		})
	}
}
