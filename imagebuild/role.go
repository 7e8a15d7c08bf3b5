package imagebuild

// Role is one image: a paddock subcommand as its entrypoint, and what the
// image's config says about it.
type Role struct {
	// Name is the image's short name (paddock-Name) and its role label.
	Name string
	// Entrypoint follows the binary's path in the config's Entrypoint.
	Entrypoint []string
	// Cmd holds the default arguments (the config's Cmd).
	Cmd []string
	// User runs the entrypoint. Storage and the scheduler need no
	// privilege; the runner needs root (user namespaces with id ranges,
	// cgroups), and so does the worker (it reads outputs written by the
	// sandboxes' unprivileged uids).
	User string
	// Ports are the TCP ports the role listens on by default.
	Ports []string
	// Description goes in the org.opencontainers.image.description label.
	Description string
}

// BinaryPath is where the paddock binary lies in every image.
const BinaryPath = "/usr/local/bin/paddock"

// nonroot is the uid and gid of the unprivileged user in the base layer
// (distroless's nonroot).
const nonroot = "65532"

// Roles are the images `make images` builds, in a fixed order.
func Roles() []Role {
	return []Role{
		{Name: "storage", Entrypoint: []string{"storage"}, Cmd: []string{"--listen", ":8980", "--dir", "/var/lib/paddock/storage"},
			User: nonroot, Ports: []string{"8980/tcp"},
			Description: "Paddock storage: CAS, action cache, ByteStream and Capabilities (REv2)"},
		{Name: "scheduler", Entrypoint: []string{"scheduler"}, Cmd: []string{"--listen", ":8981"}, User: nonroot, Ports: []string{"8981/tcp"},
			Description: "Paddock scheduler: Execution and Operations APIs, the worker protocol"},
		{Name: "worker", Entrypoint: []string{"worker"}, User: "0",
			Description: "Paddock worker: fetches inputs, runs actions through a runner, stores outputs"},
		{Name: "runner", Entrypoint: []string{"runner"}, User: "0",
			Description: "Paddock runner: runs actions in sandboxes, on a UNIX socket"},
		{Name: "installer", Entrypoint: []string{"install"}, Cmd: []string{"/paddock"}, User: "0",
			Description: "Paddock runner installer: copies the static paddock binary into a shared volume, so the runner runs inside any toolchain image"},
	}
}
