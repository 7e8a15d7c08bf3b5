package runner

import (
	"slices"
	"testing"
)

// TestHostLimits: the memory defaults that depend on the host.
func TestHostLimits(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	for _, tc := range []struct {
		name                 string
		mod                  func(*Config)
		cpus                 int
		wantDefault, wantMax int64
		wantConcurrency      int
	}{
		// 16 GiB less its tenth (14,745.6 MiB), shared, in whole MiB.
		{"host memory less reserve / CPUs", nil, 4, 3686 * mib, 16 * gib, 4},
		{"host memory less reserve / concurrency", func(c *Config) { c.Concurrency = 8 }, 4, 1843 * mib, 16 * gib, 8},
		{"explicit default", func(c *Config) { c.DefaultMemoryLimit = 3 * gib }, 4, 3 * gib, 16 * gib, 4},
		{"default capped by max", func(c *Config) { c.MaxMemoryLimit = 1 * gib }, 2, 1 * gib, 1 * gib, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			if tc.mod != nil {
				tc.mod(&cfg)
			}
			got := cfg.WithHostLimits(16*gib, tc.cpus)
			if got.DefaultMemoryLimit != tc.wantDefault || got.MaxMemoryLimit != tc.wantMax || got.Concurrency != tc.wantConcurrency {
				t.Errorf("default %d max %d concurrency %d, want %d %d %d", got.DefaultMemoryLimit, got.MaxMemoryLimit, got.Concurrency,
					tc.wantDefault, tc.wantMax, tc.wantConcurrency)
			}
		})
	}
}

// TestDefaultMemoryLimitLeavesReserve: the actions a worker runs at once,
// each at the default memory limit, leave the farm a reserve of a tenth of
// the host's memory, at least 256 MiB and at most 4 GiB, but never more
// than half the host; the limit is never below the floor (minMemoryLimit).
func TestDefaultMemoryLimitLeavesReserve(t *testing.T) {
	const mib, gib = 1 << 20, 1 << 30
	for _, tc := range []struct {
		name                     string
		host                     int64
		cpus                     int
		wantReserve, wantDefault int64
	}{
		{"small host: the least reserve", 2 * gib, 2, 256 * mib, 896 * mib},
		{"a tenth", 40 * gib, 4, 4 * gib, 9 * gib},
		{"large host: the most reserve", 128 * gib, 8, 4 * gib, 124 * gib / 8},
		{"one CPU", 8 * gib, 1, 8 * gib / 10, 7372 * mib}, // 7372.8 MiB, in whole MiB
		{"tiny host: half of it", 300 * mib, 2, 150 * mib, 75 * mib},
		{"below the floor: the floor", 2 * mib, 4, 1 * mib, minMemoryLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := hostMemoryReserve(tc.host); got != tc.wantReserve {
				t.Errorf("reserve %d MiB, want %d MiB", got/mib, tc.wantReserve/mib)
			}
			got := DefaultConfig().WithHostLimits(tc.host, tc.cpus)
			if got.DefaultMemoryLimit != tc.wantDefault {
				t.Errorf("default %d, want %d", got.DefaultMemoryLimit, tc.wantDefault)
			}
			// Above the floor, the actions together leave the reserve.
			if all := got.DefaultMemoryLimit * int64(got.Concurrency); got.DefaultMemoryLimit > minMemoryLimit && tc.host-all < tc.wantReserve {
				t.Errorf("%d actions at the default take %d MiB of %d MiB: less than the %d MiB reserve left",
					got.Concurrency, all/mib, tc.host/mib, tc.wantReserve/mib)
			}
		})
	}
}

// TestAlwaysHiddenPaths: /etc/paddock and /var/lib/paddock are hidden
// from host-root sandboxes whatever host_hidden_paths lists. A config
// lists the paths in full, so one written before /etc/paddock joined the
// defaults kept it shown after an upgrade: an action read a worker token
// left readable by all there.
func TestAlwaysHiddenPaths(t *testing.T) {
	cfg := DefaultConfig()
	cfg.HostHiddenPaths = []string{"/proc", "/sys", "/dev", "/home"} // an older config's own list
	hide := hiddenPathsOf(cfg)
	for _, want := range []string{"/etc/paddock", "/var/lib/paddock", "/home", cfg.StateDir} {
		if !slices.Contains(hide, want) {
			t.Errorf("hidden paths %v lack %s", hide, want)
		}
	}
}
