package sandbox

import (
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// cloneParams are what an init is cloned with: namespaces and id
// mappings. Inits are interchangeable between specs with the same
// cloneParams (and cgroup parent).
type cloneParams struct {
	Flags      uintptr
	UIDs, GIDs []specs.LinuxIDMapping
}

func cloneParamsFor(spec *specs.Spec) cloneParams {
	flags := uintptr(syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID)
	for _, ns := range spec.Linux.Namespaces {
		switch ns.Type {
		case specs.IPCNamespace:
			flags |= syscall.CLONE_NEWIPC
		case specs.UTSNamespace:
			flags |= syscall.CLONE_NEWUTS
		case specs.NetworkNamespace:
			flags |= syscall.CLONE_NEWNET
		}
	}
	return cloneParams{Flags: flags, UIDs: spec.Linux.UIDMappings, GIDs: spec.Linux.GIDMappings}
}

// initParams are cloneParams in a given cgroup parent.
type initParams struct {
	cloneParams
	cgroupParent string
}

// key tells kinds of initParams apart (the warm inits' map key). Built
// with strconv: fmt's reflection on the mappings was a visible share of
// the spawner's own CPU per sandbox.
func (p initParams) key() string {
	b := strconv.AppendUint(make([]byte, 0, 64), uint64(p.Flags), 16)
	for _, ms := range [][]specs.LinuxIDMapping{p.UIDs, p.GIDs} {
		b = append(b, ' ')
		for _, m := range ms {
			b = append(appendIDMapping(b, m, ':'), ',')
		}
	}
	b = append(b, ' ')
	return string(append(b, p.cgroupParent...))
}

// appendIDMapping appends m to b as "container<sep>host<sep>size".
func appendIDMapping(b []byte, m specs.LinuxIDMapping, sep byte) []byte {
	b = strconv.AppendUint(b, uint64(m.ContainerID), 10)
	b = append(b, sep)
	b = strconv.AppendUint(b, uint64(m.HostID), 10)
	b = append(b, sep)
	return strconv.AppendUint(b, uint64(m.Size), 10)
}

func idMaps(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
