package sandbox

import (
	"maps"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// The cgroup limits of a spawnRequest cross the spawner's boundary as
// every field of specs.LinuxResources: the spawner applies them as the
// caller gave them, whichever fields its cgroup code reads (a test fills
// every field, so a field a newer runtime-spec adds cannot be dropped
// unnoticed). A pointer is a presence byte and the value
// (optional_fields.go); a list or a map is a count and its items, map
// entries sorted by key; nil and empty lists and maps are alike (as they
// were in JSON, which omitted both).

func writeResources(w *wirecodec.Writer, r *specs.LinuxResources) {
	w.Bool(r != nil)
	if r == nil {
		return
	}
	w.Uvarint(uint64(len(r.Devices)))
	for _, d := range r.Devices {
		w.Bool(d.Allow)
		w.Str(d.Type, d.Access)
		writeOpts(w, w.Varint, d.Major, d.Minor)
	}
	w.Bool(r.Memory != nil)
	if m := r.Memory; m != nil {
		writeOpts(w, w.Varint, m.Limit, m.Reservation, m.Swap, m.Kernel, m.KernelTCP)
		writeOpts(w, w.Uvarint, m.Swappiness)
		writeOpts(w, w.Bool, m.DisableOOMKiller, m.UseHierarchy, m.CheckBeforeUpdate)
	}
	w.Bool(r.CPU != nil)
	if c := r.CPU; c != nil {
		writeOpts(w, w.Uvarint, c.Shares, c.Burst, c.Period, c.RealtimePeriod)
		writeOpts(w, w.Varint, c.Quota, c.RealtimeRuntime, c.Idle)
		w.Str(c.Cpus, c.Mems)
	}
	w.Bool(r.Pids != nil)
	if r.Pids != nil {
		writeOpts(w, w.Varint, r.Pids.Limit)
	}
	writeBlockIO(w, r.BlockIO)
	w.Uvarint(uint64(len(r.HugepageLimits)))
	for _, h := range r.HugepageLimits {
		w.Str(h.Pagesize)
		w.Uvarint(h.Limit)
	}
	w.Bool(r.Network != nil)
	if n := r.Network; n != nil {
		writeOpts(w, writeUint32(w), n.ClassID)
		w.Uvarint(uint64(len(n.Priorities)))
		for _, p := range n.Priorities {
			w.Str(p.Name)
			w.Uvarint(uint64(p.Priority))
		}
	}
	w.Uvarint(uint64(len(r.Rdma)))
	for _, k := range slices.Sorted(maps.Keys(r.Rdma)) {
		w.Str(k)
		writeOpts(w, writeUint32(w), r.Rdma[k].HcaHandles, r.Rdma[k].HcaObjects)
	}
	w.Uvarint(uint64(len(r.Unified)))
	for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
		w.Str(k, r.Unified[k])
	}
}

func writeBlockIO(w *wirecodec.Writer, b *specs.LinuxBlockIO) {
	w.Bool(b != nil)
	if b == nil {
		return
	}
	writeOpts(w, writeUint16(w), b.Weight, b.LeafWeight)
	w.Uvarint(uint64(len(b.WeightDevice)))
	for _, d := range b.WeightDevice {
		w.Varint(d.Major, d.Minor)
		writeOpts(w, writeUint16(w), d.Weight, d.LeafWeight)
	}
	for _, list := range [][]specs.LinuxThrottleDevice{b.ThrottleReadBpsDevice, b.ThrottleWriteBpsDevice,
		b.ThrottleReadIOPSDevice, b.ThrottleWriteIOPSDevice} {
		w.Uvarint(uint64(len(list)))
		for _, d := range list {
			w.Varint(d.Major, d.Minor)
			w.Uvarint(d.Rate)
		}
	}
}

// readResources reads what writeResources wrote.
func readResources(r *wirecodec.Reader) *specs.LinuxResources {
	if !r.Bool() {
		return nil
	}
	res := &specs.LinuxResources{}
	res.Devices = wirecodec.ReadList(r, 5, func() (d specs.LinuxDeviceCgroup) {
		d.Allow, d.Type, d.Access = r.Bool(), r.Str(), r.Str()
		readOpts(r, r.Varint, &d.Major, &d.Minor)
		return d
	})
	if r.Bool() {
		m := &specs.LinuxMemory{}
		res.Memory = m
		readOpts(r, r.Varint, &m.Limit, &m.Reservation, &m.Swap, &m.Kernel, &m.KernelTCP)
		readOpts(r, r.Uvarint, &m.Swappiness)
		readOpts(r, r.Bool, &m.DisableOOMKiller, &m.UseHierarchy, &m.CheckBeforeUpdate)
	}
	if r.Bool() {
		c := &specs.LinuxCPU{}
		res.CPU = c
		readOpts(r, r.Uvarint, &c.Shares, &c.Burst, &c.Period, &c.RealtimePeriod)
		readOpts(r, r.Varint, &c.Quota, &c.RealtimeRuntime, &c.Idle)
		c.Cpus, c.Mems = r.Str(), r.Str()
	}
	if r.Bool() {
		res.Pids = &specs.LinuxPids{}
		readOpts(r, r.Varint, &res.Pids.Limit)
	}
	res.BlockIO = readBlockIO(r)
	res.HugepageLimits = wirecodec.ReadList(r, 2, func() specs.LinuxHugepageLimit {
		return specs.LinuxHugepageLimit{Pagesize: r.Str(), Limit: r.Uvarint()}
	})
	res.Network = readNetwork(r)
	if n := r.Count(3); n > 0 {
		res.Rdma = make(map[string]specs.LinuxRdma, n)
		for range n {
			k, v := r.Str(), specs.LinuxRdma{}
			readOpts(r, r.Uint32, &v.HcaHandles, &v.HcaObjects)
			res.Rdma[k] = v
		}
	}
	if n := r.Count(2); n > 0 {
		res.Unified = make(map[string]string, n)
		for range n {
			k := r.Str()
			res.Unified[k] = r.Str()
		}
	}
	return res
}

func readNetwork(r *wirecodec.Reader) *specs.LinuxNetwork {
	if !r.Bool() {
		return nil
	}
	n := &specs.LinuxNetwork{}
	readOpts(r, r.Uint32, &n.ClassID)
	n.Priorities = wirecodec.ReadList(r, 2, func() specs.LinuxInterfacePriority {
		return specs.LinuxInterfacePriority{Name: r.Str(), Priority: r.Uint32()}
	})
	return n
}

func readBlockIO(r *wirecodec.Reader) *specs.LinuxBlockIO {
	if !r.Bool() {
		return nil
	}
	b := &specs.LinuxBlockIO{}
	readOpts(r, readUint16(r), &b.Weight, &b.LeafWeight)
	b.WeightDevice = wirecodec.ReadList(r, 4, func() (d specs.LinuxWeightDevice) {
		d.Major, d.Minor = r.Varint(), r.Varint()
		readOpts(r, readUint16(r), &d.Weight, &d.LeafWeight)
		return d
	})
	for _, list := range []*[]specs.LinuxThrottleDevice{&b.ThrottleReadBpsDevice, &b.ThrottleWriteBpsDevice,
		&b.ThrottleReadIOPSDevice, &b.ThrottleWriteIOPSDevice} {
		*list = wirecodec.ReadList(r, 3, func() (d specs.LinuxThrottleDevice) {
			d.Major, d.Minor, d.Rate = r.Varint(), r.Varint(), r.Uvarint()
			return d
		})
	}
	return b
}
