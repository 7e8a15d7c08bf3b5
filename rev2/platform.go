package rev2

// Platform property names (docs/architecture.md, the platform section of
// the REv2 spec's platform.md and the RBE conventions Bazel toolchains use),
// matched exactly.
const (
	// Routing properties select a queue: a worker must offer them.
	PropOSFamily = "OSFamily"
	PropISA      = "ISA"
	PropArch     = "Arch"
	PropPool     = "Pool"

	// Execution properties shape the sandbox and travel with the action to
	// the runner; they do not split queues.
	PropContainerImage   = "container-image"
	PropNetwork          = "dockerNetwork"
	PropRunAsRoot        = "dockerRunAsRoot"
	PropUser             = "dockerUser"
	PropPrivileged       = "dockerPrivileged"
	PropShmSize          = "dockerShmSize"
	PropAddCapabilities  = "dockerAddCapabilities"
	PropDropCapabilities = "dockerDropCapabilities"
	PropEstimatedCPU     = "EstimatedCPU"
	PropEstimatedMemory  = "EstimatedMemory"
	PropInputRootAbsPath = "InputRootAbsolutePath"
)

// RoutingProperties are the built-in routing property names. An operator
// may declare more.
func RoutingProperties() []string {
	return []string{PropOSFamily, PropISA, PropArch, PropPool}
}

// ExecutionProperties are the built-in execution property names. An
// operator may declare more (the runner must then accept them too).
func ExecutionProperties() []string {
	return []string{
		PropContainerImage, PropNetwork, PropRunAsRoot, PropUser, PropPrivileged,
		PropShmSize, PropAddCapabilities, PropDropCapabilities,
		PropEstimatedCPU, PropEstimatedMemory, PropInputRootAbsPath,
	}
}

// IsBuiltinRouting reports whether name is a built-in routing property.
func IsBuiltinRouting(name string) bool {
	switch name {
	case PropOSFamily, PropISA, PropArch, PropPool:
		return true
	}
	return false
}
