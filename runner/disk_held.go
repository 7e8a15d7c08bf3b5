package runner

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/internal/dirnames"
)

// A file the sandbox deletes while it holds it open, or mapped, keeps its
// blocks until the last holder lets go, and no walk of the input root
// finds it: an action that opened files in its input root, unlinked them
// and went on writing (each file under RLIMIT_FSIZE) held twenty times its
// quota and exited 0. So the guard also counts, for every process of the
// sandbox, the files its descriptors and its mappings (a MAP_SHARED
// mapping holds the file after its descriptor is closed) lead to that
// have no link left. It reads them from /proc: /proc/PID/task/TID/fd
// (a thread may have a descriptor table of its own) and
// /proc/PID/map_files, which only root can follow, as the runner is.
//
// The sandbox's processes are found by their uids: every process in the
// sandbox's user namespace runs as one of its slot's host uids (owns),
// and the runner gives a slot to one sandbox at a time. The runner has no
// other handle on them (the cgroup is the launcher's). A scan is not
// atomic: a process that forks and exits as it is read could carry its
// descriptors past it, so heldUsage reads /proc again for processes that
// appeared meanwhile, a few rounds; freezing the sandbox's cgroup during
// the scan would close that window for good.

// heldScanRounds bounds how many times heldUsage looks for new processes.
const heldScanRounds = 3

// kcmpFiles is KCMP_FILES of linux/kcmp.h: kcmp compares descriptor tables.
const kcmpFiles = 2

// heldUsage returns what the files held by the sandbox's processes
// (owns their uids) take, counted by countHeld against device dev.
func heldUsage(dev uint64, owns func(uid uint32) bool) (diskUse, error) {
	var held []unix.Stat_t
	classified := map[int]bool{} // pids already read, the sandbox's or not
	for range heldScanRounds {
		pids, err := newSandboxPIDs(classified, owns)
		if err != nil {
			return diskUse{}, err
		}
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			held = append(held, processHeld(pid)...)
		}
	}
	return countHeld(held, dev, owns), nil
}

// countHeld returns what the files of held take that hold space the walk
// of the input root cannot see: regular files on the device dev with no
// link left (deleted, or made with O_TMPFILE) that the sandbox owns (owns
// their uid), each inode once, its blocks and as one entry. It is pure.
func countHeld(held []unix.Stat_t, dev uint64, owns func(uid uint32) bool) diskUse {
	var u diskUse
	seen := map[uint64]bool{}
	for i := range held {
		st := &held[i]
		if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Nlink != 0 || st.Dev != dev || !owns(st.Uid) || seen[st.Ino] {
			continue
		}
		seen[st.Ino] = true
		u.files++
		u.bytes += st.Blocks * 512
	}
	return u
}

// newSandboxPIDs lists the processes in /proc not in classified that run
// as a uid owns accepts (real, effective, saved or filesystem uid), and
// adds every process it reads to classified. Processes that end meanwhile
// are passed over.
func newSandboxPIDs(classified map[int]bool, owns func(uid uint32) bool) ([]int, error) {
	names, err := dirnames.Read("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil || classified[pid] {
			continue
		}
		classified[pid] = true
		if status, err := os.ReadFile("/proc/" + name + "/status"); err == nil && runsAs(status, owns) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// runsAs reports whether any uid on the Uid: line of a /proc/PID/status
// is one owns accepts.
func runsAs(status []byte, owns func(uid uint32) bool) bool {
	s := bufio.NewScanner(bytes.NewReader(status))
	for s.Scan() {
		rest, ok := bytes.CutPrefix(s.Bytes(), []byte("Uid:"))
		if !ok {
			continue
		}
		for _, f := range bytes.Fields(rest) {
			if uid, err := strconv.ParseUint(string(f), 10, 32); err == nil && owns(uint32(uid)) {
				return true
			}
		}
		return false
	}
	return false
}

// processHeld stats what the descriptors of every thread of process pid,
// and its file mappings, lead to, keeping the files with no link left.
// A thread sharing the process's descriptor table is not read again.
func processHeld(pid int) []unix.Stat_t {
	dir := "/proc/" + strconv.Itoa(pid)
	held := unlinkedTargets(dir + "/fd")
	held = append(held, unlinkedTargets(dir+"/map_files")...)
	tasks, _ := dirnames.Read(dir + "/task")
	for _, name := range tasks {
		tid, err := strconv.Atoi(name)
		if err != nil || tid == pid {
			continue
		}
		if r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(tid), kcmpFiles, 0, 0, 0); errno == 0 && r == 0 {
			continue // the same table as pid's
		}
		held = append(held, unlinkedTargets(dir+"/task/"+name+"/fd")...)
	}
	return held
}

// unlinkedTargets stats what the links in dir (a /proc fd or map_files
// directory) lead to, and returns those with no link left.
func unlinkedTargets(dir string) []unix.Stat_t {
	names, _ := dirnames.Read(dir)
	var out []unix.Stat_t
	for _, name := range names {
		var st unix.Stat_t
		if unix.Stat(dir+"/"+name, &st) == nil && st.Nlink == 0 {
			out = append(out, st)
		}
	}
	return out
}
