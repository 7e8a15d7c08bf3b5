package sandbox

import (
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// sandboxOOMScoreAdj is the oom_score_adj of every sandbox's processes:
// the highest, so that when the host runs out of memory the kernel's OOM
// killer ends an action before any process of the farm (the runner, the
// spawner, the worker, `paddock up`), whose death would fail every action
// at once. DefaultSpec puts it in process.oomScoreAdj for external
// runtimes; the native launcher applies it whatever the spec says.
const sandboxOOMScoreAdj = 1000

// setOOMScoreAdj gives process pid, a started init that waits for its plan
// and has run no code of the action's, sandboxOOMScoreAdj. Its children,
// the command among them, inherit it.
//
// The spawner writes it, not the init: a write by a process with
// CAP_SYS_RESOURCE in the initial user namespace also sets the process's
// floor (oom_score_adj_min, inherited like the value), below which only
// such a process may lower it again; nothing in a sandbox has that
// capability, so no action can make itself less likely to be chosen. The
// init, which has it only in its own user namespace, could raise its
// value but not the floor, and the command could then lower the value
// back to the spawner's. So can it under a spawner that lacks the
// capability (the root of a container started with the defaults of
// Docker, which drop it): the value is still 1000 unless the action
// itself lowers it.
//
// pid must have exec'd: until then a child cloned with CLONE_VM shares the
// spawner's memory, and the kernel applies the write to every process
// sharing that memory, the spawner included. Both ways of starting an
// init return only after its exec. It costs three system calls on procfs
// per sandbox, while the init is warm, off the run's critical path.
func setOOMScoreAdj(pid int) error {
	file := "/proc/" + strconv.Itoa(pid) + "/oom_score_adj"
	fd, err := unix.Open(file, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: file, Err: err}
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, []byte(strconv.Itoa(sandboxOOMScoreAdj))); err != nil {
		return &os.PathError{Op: "write", Path: file, Err: err}
	}
	return nil
}
