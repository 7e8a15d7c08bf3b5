package sandbox

import (
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Warm inits are shared only between equal initParams: each difference
// (flags, either mapping, the cgroup parent) gives another key.
func TestInitParamsKey(t *testing.T) {
	m := func(c, h, s uint32) []specs.LinuxIDMapping {
		return []specs.LinuxIDMapping{{ContainerID: c, HostID: h, Size: s}}
	}
	base := initParams{cloneParams{Flags: 0x10000000, UIDs: m(0, 100000, 65536), GIDs: m(0, 100000, 65536)}, "paddock-sandbox"}
	variants := []initParams{
		base,
		{cloneParams{Flags: 0x10000000 | 0x40000000, UIDs: base.UIDs, GIDs: base.GIDs}, base.cgroupParent},
		{cloneParams{Flags: base.Flags, UIDs: m(0, 100001, 65536), GIDs: base.GIDs}, base.cgroupParent},
		{cloneParams{Flags: base.Flags, UIDs: base.UIDs, GIDs: m(0, 100000, 65535)}, base.cgroupParent},
		{cloneParams{Flags: base.Flags, UIDs: append(m(0, 100000, 1), m(1, 200000, 1)...), GIDs: base.GIDs}, base.cgroupParent},
		{base.cloneParams, "other"},
	}
	seen := map[string]int{}
	for i, p := range variants {
		if j, ok := seen[p.key()]; ok {
			t.Errorf("params %d and %d share the key %q", j, i, p.key())
		}
		seen[p.key()] = i
	}
	same := initParams{cloneParams{Flags: base.Flags, UIDs: m(0, 100000, 65536), GIDs: m(0, 100000, 65536)}, "paddock-sandbox"}
	if same.key() != base.key() {
		t.Errorf("equal params: keys %q and %q", same.key(), base.key())
	}
}
