package sandbox

import (
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/paddock-build/paddock/internal/wirecodec"
)

// The cgroup limits of a spawnRequest cross the spawner's boundary as
// every field of specs.LinuxResources, in declaration order: the spawner
// applies them as the caller gave them, whichever fields its cgroup code
// reads. An optional (pointer) field is a presence byte and the value; a
// list or a map is a count and its items, map entries sorted by key; nil
// and empty lists and maps are alike (as they were in JSON, which omitted
// both).

func writeResources(w *wirecodec.Writer, r *specs.LinuxResources) {
	w.Bool(r != nil)
	if r == nil {
		return
	}
	w.Uvarint(uint64(len(r.Devices)))
	for _, d := range r.Devices {
		w.Bool(d.Allow)
		w.String(d.Type)
		writeOptInt(w, d.Major)
		writeOptInt(w, d.Minor)
		w.String(d.Access)
	}
	w.Bool(r.Memory != nil)
	if m := r.Memory; m != nil {
		writeOptInt(w, m.Limit)
		writeOptInt(w, m.Reservation)
		writeOptInt(w, m.Swap)
		writeOptInt(w, m.Kernel)
		writeOptInt(w, m.KernelTCP)
		writeOptUint(w, m.Swappiness)
		writeOptBool(w, m.DisableOOMKiller)
		writeOptBool(w, m.UseHierarchy)
		writeOptBool(w, m.CheckBeforeUpdate)
	}
	w.Bool(r.CPU != nil)
	if c := r.CPU; c != nil {
		writeOptUint(w, c.Shares)
		writeOptInt(w, c.Quota)
		writeOptUint(w, c.Burst)
		writeOptUint(w, c.Period)
		writeOptInt(w, c.RealtimeRuntime)
		writeOptUint(w, c.RealtimePeriod)
		w.String(c.Cpus)
		w.String(c.Mems)
		writeOptInt(w, c.Idle)
	}
	w.Bool(r.Pids != nil)
	if r.Pids != nil {
		writeOptInt(w, r.Pids.Limit)
	}
	writeBlockIO(w, r.BlockIO)
	w.Uvarint(uint64(len(r.HugepageLimits)))
	for _, h := range r.HugepageLimits {
		w.String(h.Pagesize)
		w.Uvarint(h.Limit)
	}
	w.Bool(r.Network != nil)
	if n := r.Network; n != nil {
		writeOptUint32(w, n.ClassID)
		w.Uvarint(uint64(len(n.Priorities)))
		for _, p := range n.Priorities {
			w.String(p.Name)
			w.Uvarint(uint64(p.Priority))
		}
	}
	w.Uvarint(uint64(len(r.Rdma)))
	for _, k := range sortedKeys(r.Rdma) {
		w.String(k)
		writeOptUint32(w, r.Rdma[k].HcaHandles)
		writeOptUint32(w, r.Rdma[k].HcaObjects)
	}
	w.Uvarint(uint64(len(r.Unified)))
	for _, k := range sortedKeys(r.Unified) {
		w.String(k)
		w.String(r.Unified[k])
	}
}

func writeBlockIO(w *wirecodec.Writer, b *specs.LinuxBlockIO) {
	w.Bool(b != nil)
	if b == nil {
		return
	}
	writeOptUint16(w, b.Weight)
	writeOptUint16(w, b.LeafWeight)
	w.Uvarint(uint64(len(b.WeightDevice)))
	for _, d := range b.WeightDevice {
		w.Varint(d.Major)
		w.Varint(d.Minor)
		writeOptUint16(w, d.Weight)
		writeOptUint16(w, d.LeafWeight)
	}
	for _, list := range [][]specs.LinuxThrottleDevice{b.ThrottleReadBpsDevice, b.ThrottleWriteBpsDevice,
		b.ThrottleReadIOPSDevice, b.ThrottleWriteIOPSDevice} {
		w.Uvarint(uint64(len(list)))
		for _, d := range list {
			w.Varint(d.Major)
			w.Varint(d.Minor)
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
	if n := r.Count(5); n > 0 {
		res.Devices = make([]specs.LinuxDeviceCgroup, n)
		for i := range res.Devices {
			res.Devices[i] = specs.LinuxDeviceCgroup{Allow: r.Bool(), Type: r.String(), Major: readOptInt(r),
				Minor: readOptInt(r), Access: r.String()}
		}
	}
	if r.Bool() {
		res.Memory = &specs.LinuxMemory{Limit: readOptInt(r), Reservation: readOptInt(r), Swap: readOptInt(r),
			Kernel: readOptInt(r), KernelTCP: readOptInt(r), Swappiness: readOptUint(r),
			DisableOOMKiller: readOptBool(r), UseHierarchy: readOptBool(r), CheckBeforeUpdate: readOptBool(r)}
	}
	if r.Bool() {
		res.CPU = &specs.LinuxCPU{Shares: readOptUint(r), Quota: readOptInt(r), Burst: readOptUint(r),
			Period: readOptUint(r), RealtimeRuntime: readOptInt(r), RealtimePeriod: readOptUint(r),
			Cpus: r.String(), Mems: r.String(), Idle: readOptInt(r)}
	}
	if r.Bool() {
		res.Pids = &specs.LinuxPids{Limit: readOptInt(r)}
	}
	res.BlockIO = readBlockIO(r)
	if n := r.Count(2); n > 0 {
		res.HugepageLimits = make([]specs.LinuxHugepageLimit, n)
		for i := range res.HugepageLimits {
			res.HugepageLimits[i] = specs.LinuxHugepageLimit{Pagesize: r.String(), Limit: r.Uvarint()}
		}
	}
	if r.Bool() {
		res.Network = &specs.LinuxNetwork{ClassID: readOptUint32(r)}
		if n := r.Count(2); n > 0 {
			res.Network.Priorities = make([]specs.LinuxInterfacePriority, n)
			for i := range res.Network.Priorities {
				res.Network.Priorities[i] = specs.LinuxInterfacePriority{Name: r.String(), Priority: r.Uint32()}
			}
		}
	}
	if n := r.Count(3); n > 0 {
		res.Rdma = make(map[string]specs.LinuxRdma, n)
		for range n {
			k := r.String()
			res.Rdma[k] = specs.LinuxRdma{HcaHandles: readOptUint32(r), HcaObjects: readOptUint32(r)}
		}
	}
	if n := r.Count(2); n > 0 {
		res.Unified = make(map[string]string, n)
		for range n {
			k := r.String()
			res.Unified[k] = r.String()
		}
	}
	return res
}

func readBlockIO(r *wirecodec.Reader) *specs.LinuxBlockIO {
	if !r.Bool() {
		return nil
	}
	b := &specs.LinuxBlockIO{Weight: readOptUint16(r), LeafWeight: readOptUint16(r)}
	if n := r.Count(4); n > 0 {
		b.WeightDevice = make([]specs.LinuxWeightDevice, n)
		for i := range b.WeightDevice {
			d := &b.WeightDevice[i]
			d.Major, d.Minor = r.Varint(), r.Varint()
			d.Weight, d.LeafWeight = readOptUint16(r), readOptUint16(r)
		}
	}
	for _, list := range []*[]specs.LinuxThrottleDevice{&b.ThrottleReadBpsDevice, &b.ThrottleWriteBpsDevice,
		&b.ThrottleReadIOPSDevice, &b.ThrottleWriteIOPSDevice} {
		if n := r.Count(3); n > 0 {
			*list = make([]specs.LinuxThrottleDevice, n)
			for i := range *list {
				d := &(*list)[i]
				d.Major, d.Minor, d.Rate = r.Varint(), r.Varint(), r.Uvarint()
			}
		}
	}
	return b
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
