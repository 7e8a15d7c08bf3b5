package sandbox

import (
	"fmt"
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

func (p initParams) key() string {
	return fmt.Sprintf("%x %v %v %s", p.Flags, p.UIDs, p.GIDs, p.cgroupParent)
}

func idMaps(ms []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}
