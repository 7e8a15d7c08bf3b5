package sandbox

import (
	"errors"
	"os"
	"os/exec"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/timerslack"
)

// initStart is everything an init is started with: the program, its
// arguments and environment, the descriptors it gets as 0 to 4 (stdin,
// stdout, stderr, the control pipe, the status pipe), its namespaces and
// id mappings. The spawner starts one per sandbox, so its cost is paid on
// every action.
//
// Where it can (startVM: amd64), it clones the init with CLONE_VM: the
// child shares the spawner's memory until its exec, on a small stack of
// its own, so the kernel neither copies the spawner's page tables nor
// tears the copy down at the exec, and the spawner takes no copy-on-write
// faults afterwards. Go's own fork cannot do that for a new user
// namespace (it uses vfork only without CLONE_NEWUSER), which cost about
// 0.7 ms of CPU per sandbox here. Elsewhere, and on kernels without
// clone3, it forks as Go does (startForked).
type initStart struct {
	path  string
	argv  []string
	env   []string
	files [5]*os.File
	clone cloneParams
}

// errNoCloneVM says startVM cannot be used here: fork instead.
var errNoCloneVM = errors.New("clone with CLONE_VM not available")

// useCloneVM lets tests force the forking path.
var useCloneVM = true

// start starts the init from the calling OS thread, whose cgroup (on v1)
// the init is born in; with cgroupFD >= 0 it is born in that cgroup
// instead (clone3's CLONE_INTO_CGROUP, v2). It returns the init's pid;
// nothing waits for it (see initProcess). The init, and so the action,
// gets the kernel's default timer slack, not the spawner's
// (timerslack.Farm).
func (st *initStart) start(cgroupFD int) (pid int, err error) {
	err = timerslack.WithDefault(func() error {
		pid, err = st.startFromThread(cgroupFD)
		return err
	})
	return pid, err
}

func (st *initStart) startFromThread(cgroupFD int) (int, error) {
	if useCloneVM {
		pid, err := st.startVM(cgroupFD)
		if !errors.Is(err, errNoCloneVM) {
			return pid, err
		}
	}
	return st.startForked(cgroupFD)
}

// startForked starts the init through os/exec.
func (st *initStart) startForked(cgroupFD int) (int, error) {
	cmd := &exec.Cmd{
		Path:       st.path,
		Args:       st.argv,
		Env:        st.env,
		Stdin:      st.files[0],
		Stdout:     st.files[1],
		Stderr:     st.files[2],
		ExtraFiles: st.files[3:],
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:                 st.clone.Flags,
			UidMappings:                idMaps(st.clone.UIDs),
			GidMappings:                idMaps(st.clone.GIDs),
			GidMappingsEnableSetgroups: true,
			// The child still has host uid 0, which is unmapped: become
			// container root (a mapped host uid) before exec, or the exec
			// would drop every capability.
			Credential: &syscall.Credential{Uid: 0, Gid: 0},
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	if cgroupFD >= 0 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cgroupFD
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	pid := cmd.Process.Pid
	// Reaped by initProcess, not by cmd.Wait.
	_ = cmd.Process.Release()
	return pid, nil
}

// writeIDMaps writes the uid and gid mappings of the new user namespace of
// process pid (a child that waits for them), as Go's fork does.
func writeIDMaps(pid int, uids, gids []specs.LinuxIDMapping) error {
	dir := "/proc/" + strconv.Itoa(pid) + "/"
	if err := writeIDMap(dir+"uid_map", uids); err != nil {
		return err
	}
	return writeIDMap(dir+"gid_map", gids)
}

func writeIDMap(file string, ms []specs.LinuxIDMapping) error {
	if len(ms) == 0 {
		return nil
	}
	var b []byte
	for _, m := range ms {
		b = append(appendIDMapping(b, m, ' '), '\n')
	}
	fd, err := unix.Open(file, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: file, Err: err}
	}
	defer unix.Close(fd)
	if _, err := unix.Write(fd, b); err != nil {
		return &os.PathError{Op: "write", Path: file, Err: err}
	}
	return nil
}
