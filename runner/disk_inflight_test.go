package runner

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/paddock-build/paddock/internal/testdisk"
)

// TestWorkDiskFillByFilesInFlight: files sent with SCM_RIGHTS to a
// socket nobody reads, then closed and deleted, are in no descriptor
// table and under no name, and keep their blocks. Before, an action held
// 1.9 GB so past a 256 MiB quota and exited 0, its result cached. While a
// sandbox holds descriptors in flight the guard counts the filesystem's
// growth as its own. The input root is on a filesystem of the test's own,
// so that nothing else grows or frees space there meanwhile.
func TestWorkDiskFillByFilesInFlight(t *testing.T) {
	disk := testdisk.MountAt(t, filepath.Join(searchableTempDir(t), "disk"), 128<<20, 0)
	if err := os.Chmod(disk, 0o755); err != nil {
		t.Fatal(err)
	}
	e := newTestEnvIn(t, disk, func(c *Config) { c.DiskQuota = 8 * mib })
	a := e.newAction(t)
	resp := e.run(t, a.request("/usr/bin/python3", "-c", `
import array, os, socket, time
a, b = socket.socketpair()
for i in range(4):
    fd = os.open("f%d" % i, os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"\0" * (6 << 20))
    a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    os.close(fd)
    os.unlink("f%d" % i)
time.sleep(5)
`))
	if codes.Code(resp.StatusCode) != codes.ResourceExhausted || !strings.Contains(resp.StatusMessage, "in flight") || !strings.Contains(resp.StatusMessage, "disk quota of 8 MiB") {
		_, stderr := a.output(t)
		t.Errorf("%s (stderr %q); want RESOURCE_EXHAUSTED naming the descriptors in flight and the 8 MiB quota", describe(resp), stderr)
	}
	checkNextActionRuns(t, e)
}

// TestHeldScanCountsInFlightAndEachMappedFileOnce: a scan adds the
// descriptors queued in the process's UNIX sockets, and looks at a file
// mapped many times once (each mapping is still an entry of the scan).
func TestHeldScanCountsInFlightAndEachMappedFileOnce(t *testing.T) {
	requireRoot(t) // /proc/PID/map_files
	scan := func() heldFiles {
		h := heldFiles{seen: map[[2]uint64]bool{}}
		h.process(os.Getpid())
		return h
	}
	before := scan()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := unix.Sendmsg(fds[0], []byte("x"), unix.UnixRights(0, 1), nil, 0); err != nil {
		t.Fatal(err)
	}

	f, err := os.Create(filepath.Join(t.TempDir(), "mapped"))
	if err == nil {
		err = f.Truncate(4096)
	}
	if err == nil {
		err = os.Remove(f.Name())
	}
	if err != nil {
		t.Fatal(err)
	}
	const times = 500
	for range times {
		m, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = unix.Munmap(m) }() // teardown: the checks are done
	}
	var want unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &want); err != nil {
		t.Fatal(err)
	}
	f.Close()

	after := scan()
	// At least: the test binary's other sockets (a spawner's) may carry
	// descriptors of their own at either scan.
	if got := after.inFlight - before.inFlight; got < 2 {
		t.Errorf("%d more descriptors in flight, want at least the 2 sent", got)
	}
	n := 0
	for _, st := range after.held {
		if st.Ino == want.Ino && st.Dev == want.Dev {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the deleted file mapped %d times is held %d times in the scan, want once", times, n)
	}
	if after.entries < before.entries+times {
		t.Errorf("%d entries looked at, want at least %d more than %d", after.entries, times, before.entries)
	}
}

// TestHeldScanBeyondItsBoundIsAnError: past maxHeldEntries descriptors
// and mappings, a scan stops and says so, and the guard kills the
// sandbox as uncountable, rather than spending the runner's CPU and
// memory on every one (4.2 million mappings of one file took a scan
// seconds and the runner to 1.2 GB).
func TestHeldScanBeyondItsBoundIsAnError(t *testing.T) {
	requireRoot(t)
	defer func(n int) { maxHeldEntries = n }(maxHeldEntries)
	maxHeldEntries = 10 // this process alone maps more files than that
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	me := uint32(os.Getuid())
	_, _, err := heldUsage(st.Dev, func(uid uint32) bool { return uid == me })
	if err == nil || !strings.Contains(err.Error(), "more than 10 descriptors and file mappings") {
		t.Fatalf("heldUsage past the bound: %v, want an error naming it", err)
	}
}

func TestParseMapsLine(t *testing.T) {
	for _, c := range []struct {
		line, addr string
		id         [2]uint64
		ok         bool
	}{
		{"7f00d1a2b000-7f00d1a2c000 r--s 00000000 fd:01 1234567    /work/a b (deleted)", "7f00d1a2b000-7f00d1a2c000", [2]uint64{unix.Mkdev(0xfd, 1), 1234567}, true},
		{"55d0c0a00000-55d0c0a21000 rw-p 00000000 00:00 0                          [heap]", "55d0c0a00000-55d0c0a21000", [2]uint64{0, 0}, true},
		{"7ffd1000-7ffd2000 r-xp 00000000 103:0a 42", "7ffd1000-7ffd2000", [2]uint64{unix.Mkdev(0x103, 0xa), 42}, true},
		{"7ffd1000-7ffd2000 r-xp 00000000 fd01 42", "", [2]uint64{}, false},
		{"7ffd1000-7ffd2000 r-xp 00000000 fd:01 -1", "", [2]uint64{}, false},
		{"7ffd1000-7ffd2000 r-xp 00000000 fd:01 99999999999999999999", "", [2]uint64{}, false},
		{"short line", "", [2]uint64{}, false},
	} {
		addr, id, ok := parseMapsLine([]byte(c.line))
		if string(addr) != c.addr || id != c.id || ok != c.ok {
			t.Errorf("parseMapsLine(%q) = %q, %v, %v; want %q, %v, %v", c.line, addr, id, ok, c.addr, c.id, c.ok)
		}
	}
}
