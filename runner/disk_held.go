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

// maxHeldEntries bounds the descriptors and file mappings one scan looks
// at, across the sandbox's processes. Every one is a read or a stat of
// /proc, and an action mapping one deleted file 65,000 times in each of
// 64 processes made a scan take seconds of the runner's CPU (so the
// guard, which cannot act while it scans, let 2.4 GB past a 256 MiB
// quota) and, keeping a stat of each, grew the runner by 1.2 GB that no
// sandbox's memory limit counted. Programs hold a few thousand at most;
// past the bound the guard cannot count the sandbox's files, and kills it.
var maxHeldEntries = 1 << 20 // a var so that a test can lower it

// kcmpFiles is KCMP_FILES of linux/kcmp.h: kcmp compares descriptor tables.
const kcmpFiles = 2

// heldFiles is what a scan of the sandbox's processes found: the files
// with no link left that their descriptors and mappings lead to, each
// once, and the descriptors queued in their UNIX sockets.
type heldFiles struct {
	held []unix.Stat_t
	// inFlight counts the descriptors sent with SCM_RIGHTS and not yet
	// received, which no process's table holds: the files behind them
	// keep their blocks, and nothing in /proc says which files they are.
	inFlight int64
	entries  int                // descriptors and mappings looked at
	seen     map[[2]uint64]bool // mapped files already looked at, by device and inode
}

// heldUsage returns what the files held by the sandbox's processes
// (owns their uids) take, counted by countHeld against device dev, and
// how many descriptors they hold in flight.
func heldUsage(dev uint64, owns func(uid uint32) bool) (diskUse, int64, error) {
	h := heldFiles{seen: map[[2]uint64]bool{}}
	classified := map[int]bool{} // pids already read, the sandbox's or not
	for range heldScanRounds {
		pids, err := newSandboxPIDs(classified, owns)
		if err != nil {
			return diskUse{}, 0, err
		}
		if len(pids) == 0 {
			break
		}
		for _, pid := range pids {
			h.process(pid)
			if h.entries > maxHeldEntries {
				return diskUse{}, 0, fmt.Errorf("the sandbox's processes hold more than %d descriptors and file mappings", maxHeldEntries)
			}
		}
	}
	return countHeld(h.held, dev, owns), h.inFlight, nil
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

// process adds what the descriptors of every thread of process pid, and
// its file mappings, lead to. A thread sharing the process's descriptor
// table is not read again.
func (h *heldFiles) process(pid int) {
	dir := "/proc/" + strconv.Itoa(pid)
	h.descriptors(dir)
	h.mappings(dir)
	tasks, _ := dirnames.Read(dir + "/task")
	for _, name := range tasks {
		tid, err := strconv.Atoi(name)
		if err != nil || tid == pid {
			continue
		}
		if r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(tid), kcmpFiles, 0, 0, 0); errno == 0 && r == 0 {
			continue // the same table as pid's
		}
		h.descriptors(dir + "/task/" + name)
	}
}

// descriptors stats what the descriptors in dir/fd (dir a process or a
// thread of /proc) lead to, keeping the files with no link left, and
// adds the descriptors in flight in each UNIX socket among them.
func (h *heldFiles) descriptors(dir string) {
	names, _ := dirnames.Read(dir + "/fd")
	h.entries += len(names)
	for _, name := range names {
		var st unix.Stat_t
		if unix.Stat(dir+"/fd/"+name, &st) != nil {
			continue
		}
		switch {
		case st.Mode&unix.S_IFMT == unix.S_IFSOCK:
			h.inFlight += scmFDs(dir + "/fdinfo/" + name)
		case st.Nlink == 0:
			h.held = append(h.held, st)
		}
	}
}

// mappings stats the files mapped by process dir (in /proc) that it has
// not seen, through map_files, keeping those with no link left. Which
// file a mapping is comes from dir/maps (its device and inode), so a file
// mapped many times is looked at once.
func (h *heldFiles) mappings(dir string) {
	f, err := os.Open(dir + "/maps")
	if err != nil {
		return
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 0, 64<<10), 64<<10) // a path is at most PATH_MAX, escaped
	for s.Scan() {
		h.entries++
		if h.entries > maxHeldEntries {
			return
		}
		addr, id, ok := parseMapsLine(s.Bytes())
		if !ok || id[1] == 0 || h.seen[id] { // inode 0: not a file
			continue
		}
		h.seen[id] = true
		var st unix.Stat_t
		if unix.Stat(dir+"/map_files/"+string(addr), &st) == nil && st.Nlink == 0 {
			h.held = append(h.held, st)
		}
	}
}

// parseMapsLine returns the address range of a line of /proc/PID/maps
// ("start-end perms offset major:minor inode path") and its file's
// device and inode. It allocates nothing: a scan reads every mapping.
func parseMapsLine(line []byte) (addr []byte, id [2]uint64, ok bool) {
	var f [5][]byte
	for i := range f {
		line = bytes.TrimLeft(line, " ")
		end := bytes.IndexByte(line, ' ')
		if end < 0 {
			end = len(line)
		}
		f[i], line = line[:end], line[end:]
	}
	major, minor, found := bytes.Cut(f[3], []byte(":"))
	maj, ok1 := parseUint(major, 16)
	mnr, ok2 := parseUint(minor, 16)
	ino, ok3 := parseUint(f[4], 10)
	if !found || !ok1 || !ok2 || !ok3 || maj > 1<<32-1 || mnr > 1<<32-1 {
		return nil, id, false
	}
	return f[0], [2]uint64{unix.Mkdev(uint32(maj), uint32(mnr)), ino}, true
}

// parseUint parses b, digits in base 10 or 16 (lower case, as /proc
// writes them), without converting it to a string.
func parseUint(b []byte, base uint64) (uint64, bool) {
	var n uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		if n > (1<<64-1-d)/base {
			return 0, false
		}
		n = n*base + d
	}
	return n, len(b) > 0
}

// scmFDs reads how many descriptors are in flight in a UNIX socket from
// its /proc fdinfo file (the scm_fds line, Linux 5.3 and later); 0 for
// any other socket.
func scmFDs(fdinfo string) int64 {
	b, err := os.ReadFile(fdinfo)
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("scm_fds:")); ok {
			n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
			return n
		}
	}
	return 0
}
