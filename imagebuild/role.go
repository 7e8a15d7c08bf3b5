package imagebuild

// Role is one image: a paddock subcommand as its entrypoint, and what the
// image's config says about it.
type Role struct {
	// Name is the image's short name (paddock-Name) and its role label.
	Name string
	// Entrypoint follows the binary's path in the config's Entrypoint.
	Entrypoint []string
	// Cmd holds the default arguments (the config's Cmd), which any
	// arguments the operator gives replace whole (`docker run IMAGE ARGS`,
	// a Kubernetes container's args); see helpUntilConfigured.
	Cmd []string
	// User runs the entrypoint. Storage and the scheduler need no
	// privilege; the runner needs root (user namespaces with id ranges,
	// cgroups), and so does the worker (it reads outputs written by the
	// sandboxes' unprivileged uids).
	User string
	// Ports are the TCP ports the role is served on in the deployments
	// (the config's ExposedPorts); the role's own default address is on
	// loopback.
	Ports []string
	// Description goes in the org.opencontainers.image.description label.
	Description string
}

// BinaryPath is where the paddock binary lies in every image.
const BinaryPath = "/usr/local/bin/paddock"

// nonroot is the uid and gid of the unprivileged user in the base layer
// (distroless's nonroot).
const nonroot = "65532"

// helpUntilConfigured returns the default arguments of the storage and
// scheduler images: the role prints its usage and exits. A listener a
// container can be reached on is not loopback, which the roles refuse
// without TLS and an auth policy unless told --insecure; defaults that
// said --insecure would make that choice for every `docker run`, and
// defaults without it (once `--listen :8980 --dir …`) only exited with
// that refusal, the scheduler also without the --storage no image can
// know. The operator gives the whole command line, as deploy/kubernetes
// and deploy/systemd do.
func helpUntilConfigured() []string { return []string{"--help"} }

// Roles are the images `make images` builds, in a fixed order.
func Roles() []Role {
	return []Role{
		{Name: "storage", Entrypoint: []string{"storage"}, Cmd: helpUntilConfigured(),
			User: nonroot, Ports: []string{"8980/tcp"},
			Description: "Paddock storage: CAS, action cache, ByteStream and Capabilities (REv2)"},
		{Name: "scheduler", Entrypoint: []string{"scheduler"}, Cmd: helpUntilConfigured(), User: nonroot, Ports: []string{"8981/tcp"},
			Description: "Paddock scheduler: Execution and Operations APIs, the worker protocol"},
		{Name: "worker", Entrypoint: []string{"worker"}, User: "0",
			Description: "Paddock worker: fetches inputs, runs actions through a runner, stores outputs"},
		{Name: "runner", Entrypoint: []string{"runner"}, User: "0",
			Description: "Paddock runner: runs actions in sandboxes, on a UNIX socket"},
		{Name: "installer", Entrypoint: []string{"install"}, Cmd: []string{"/paddock"}, User: "0",
			Description: "Paddock runner installer: copies the static paddock binary into a shared volume, so the runner runs inside any toolchain image"},
	}
}
