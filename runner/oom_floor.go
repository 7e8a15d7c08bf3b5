package runner

import (
	"log/slog"

	"golang.org/x/sys/unix"
)

// warnWithoutOOMFloor says at start when the runner lacks CAP_SYS_RESOURCE
// (the root of a container started with Docker's default capabilities):
// its sandboxes still get oom_score_adj 1000, but the spawner cannot make
// that the floor, so an action may lower its own back to the runner's and
// the OOM killer may then take a process of the farm instead of it.
func warnWithoutOOMFloor(log *slog.Logger) {
	if !hasCapSysResource() {
		log.Warn("the runner lacks CAP_SYS_RESOURCE: sandboxes get oom_score_adj 1000, but an action can lower its own back to the runner's; grant the capability to make 1000 their floor")
	}
}

// hasCapSysResource reports whether this process has CAP_SYS_RESOURCE in
// its effective set; false if it cannot tell.
func hasCapSysResource() bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[0].Effective&(1<<unix.CAP_SYS_RESOURCE) != 0
}
