package runner

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
)

// TestWorkDiskFillByHeldFiles: files the action deletes while it holds
// them, open or mapped, keep their blocks, and no walk of the input root
// finds them. They count against disk_quota all the same: three 6 MiB
// files held past an 8 MiB quota get the sandbox killed, answered
// RESOURCE_EXHAUSTED, long before it would exit 0 by itself.
func TestWorkDiskFillByHeldFiles(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"open", `exec 3>f1; rm f1; head -c 6M /dev/zero >&3 || exit 1
exec 4>f2; rm f2; head -c 6M /dev/zero >&4 || exit 1
exec 5>f3; rm f3; head -c 6M /dev/zero >&5 || exit 1
sleep 5`},
		// MAP_SHARED mappings hold their files with no descriptor left.
		{"mapped", `exec perl -e '
for my $i (1..3) {
	open(my $f, "+>", "m$i") or die "open: $!";
	syswrite($f, "\0" x (6 << 20)) == 6 << 20 or die "write: $!";
	syscall(9, 0, 6 << 20, 1, 1, fileno($f), 0) != -1 or die "mmap: $!"; # PROT_READ, MAP_SHARED
	close($f); unlink("m$i") or die "unlink: $!";
}
sleep 5;'`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.name == "mapped" && runtime.GOARCH != "amd64" {
				t.Skip("the script calls mmap by its amd64 number")
			}
			e := newTestEnv(t, func(c *Config) { c.DiskQuota = 8 * mib })
			a := e.newAction(t)
			resp := e.run(t, a.request("/bin/sh", "-c", tc.script))
			if codes.Code(resp.StatusCode) != codes.ResourceExhausted || !strings.Contains(resp.StatusMessage, "disk quota of 8 MiB") {
				_, stderr := a.output(t)
				t.Errorf("%s (stderr %q); want RESOURCE_EXHAUSTED naming the 8 MiB quota", describe(resp), stderr)
			}
			checkNextActionRuns(t, e)
		})
	}
}

// TestWorkDiskFillBelowLongPaths: below a path longer than PATH_MAX
// (twenty nested 250-byte names) a walk by path name sees nothing; the
// guard walks by descriptor, so bytes and entries hidden there count.
func TestWorkDiskFillBelowLongPaths(t *testing.T) {
	const deep = `n=$(printf '%0250d' 0); i=0
while [ $i -lt 20 ]; do mkdir $n && cd $n || exit 1; i=$((i+1)); done
`
	for _, tc := range []struct {
		name, script, want string
		files              int64
	}{
		{"bytes", deep + "head -c 6M /dev/zero >a && head -c 6M /dev/zero >b && head -c 6M /dev/zero >c || exit 1; sleep 5",
			"disk quota of 8 MiB", 0},
		{"files", deep + "seq 1 3000 | xargs touch || exit 1; sleep 5",
			"more than 1000 files, directories and links", 1000},
		// Deeper than the guard walks: killed as uncountable, saying so.
		{"too deep to count", "i=0; while [ $i -lt 600 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done; sleep 5",
			"nested deeper than 512 directories", 1000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, func(c *Config) { c.DiskQuota, c.DiskQuotaFiles = 8*mib, tc.files })
			a := e.newAction(t)
			// bash, not sh: dash's cd fails past PATH_MAX.
			resp := e.run(t, a.request("/bin/bash", "-c", tc.script))
			if codes.Code(resp.StatusCode) != codes.ResourceExhausted || !strings.Contains(resp.StatusMessage, tc.want) {
				_, stderr := a.output(t)
				t.Errorf("%s (stderr %q); want RESOURCE_EXHAUSTED saying %q", describe(resp), stderr, tc.want)
			}
			checkNextActionRuns(t, e)
		})
	}
}

// TestWorkDirFill: directories count against disk_quota at their size on
// disk, at least 4 KiB each: 100,000 empty directories (393 MB on ext4)
// under a 64 MiB quota get the sandbox killed, answered
// RESOURCE_EXHAUSTED, long before the action has made them all. When each
// directory was allowed its first 4 KiB, the action exited 0.
func TestWorkDirFill(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DiskQuota, c.DiskQuotaFiles = 64*mib, 1_000_000 })
	a := e.newAction(t)
	resp := e.run(t, a.request("/bin/sh", "-c", pacedFill("mkdir", 100000)+" && sleep 5"))
	if codes.Code(resp.StatusCode) != codes.ResourceExhausted || !strings.Contains(resp.StatusMessage, "disk quota of 64 MiB") {
		t.Errorf("%s; want RESOURCE_EXHAUSTED naming the 64 MiB quota", describe(resp))
	}
	checkStoppedEarly(t, e, a, "directories", 100000)
}

// TestWorkGivenDirs: the input root's own directories, which the worker
// made and the runner gives to the sandbox, take none of disk_quota: an
// input root of 20,000 directories (80 MB) and a 32 MiB file the action
// writes stay within a 64 MiB quota, through the guard's walks.
func TestWorkGivenDirs(t *testing.T) {
	e := newTestEnv(t, func(c *Config) { c.DiskQuota = 64 * mib })
	a := e.newAction(t)
	for i := range 20000 {
		if err := os.MkdirAll(filepath.Join(a.root, strconv.Itoa(i%100), strconv.Itoa(i)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The guard walks at least once a second: three walks, at least, see
	// the file.
	resp := e.run(t, a.request("/bin/sh", "-c", "head -c 32M /dev/zero >f && sleep 3"))
	mustSucceed(t, a, resp)
}

// walkDir runs walkTree on dir, counting every entry as the sandbox's.
func walkDir(t *testing.T, dir string) (diskUse, error) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return walkTree(fd, func(uint32) bool { return true }, nil)
}

// mkdirDeep makes depth nested directories named name below dir, by
// descriptor (their paths may pass PATH_MAX), and returns the deepest,
// open; the test closes it.
func mkdirDeep(t *testing.T, dir, name string, depth int) int {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	for range depth {
		err := unix.Mkdirat(fd, name, 0o755)
		next, err2 := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err := errors.Join(err, err2); err != nil {
			t.Fatal(err)
		}
		fd = next
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// TestWalkTree: the walk counts entries and blocks however long their
// paths, each inode's blocks once, never follows a symlink, and fails
// rather than skip a tree deeper than maxWalkDepth.
// TestChownDirectoriesBelowPathMax: the input root's directories go to
// the sandbox's ids however deep they are (here below a path longer than
// PATH_MAX, where a walk by path name failed with ENAMETOOLONG); its
// files, and what a symlink in it points to, stay as they were.
func TestChownDirectoriesBelowPathMax(t *testing.T) {
	requireRoot(t)
	root, outside := t.TempDir(), t.TempDir()
	name := strings.Repeat("n", 250)
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []int // open, root's first
	for range 20 {
		dirs = append(dirs, fd)
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatal(err)
		}
		if fd, err = unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0); err != nil {
			t.Fatal(err)
		}
	}
	dirs = append(dirs, fd)
	defer func() {
		for _, fd := range dirs {
			unix.Close(fd)
		}
	}()
	for _, fd := range dirs[len(dirs)-2:] { // a file and a symlink out in the two deepest
		if f, err := unix.Openat(fd, "file", unix.O_CREAT|unix.O_WRONLY|unix.O_CLOEXEC, 0o444); err != nil {
			t.Fatal(err)
		} else {
			unix.Close(f)
		}
		if err := unix.Symlinkat(outside, fd, "out"); err != nil {
			t.Fatal(err)
		}
	}
	const uid, gid = 54321, 54322
	given, err := chownDirectories(root, uid, gid)
	if err != nil || len(given) != len(dirs) {
		t.Fatalf("chownDirectories: %d directories, %v; want %d", len(given), err, len(dirs))
	}
	owner := func(fd int, name string) (uint32, uint32) {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW|unix.AT_EMPTY_PATH); err != nil {
			t.Fatal(err)
		}
		return st.Uid, st.Gid
	}
	for i, fd := range dirs {
		if u, g := owner(fd, ""); u != uid || g != gid {
			t.Errorf("directory %d deep: owned by %d:%d, want %d:%d", i, u, g, uid, gid)
		}
	}
	me := uint32(os.Getuid())
	for _, fd := range dirs[len(dirs)-2:] {
		if u, _ := owner(fd, "file"); u != me {
			t.Errorf("a file went to %d; files stay the worker's", u)
		}
		if u, _ := owner(fd, "out"); u != me {
			t.Errorf("a symlink went to %d", u)
		}
	}
	if u, _ := owner(unix.AT_FDCWD, outside); u != me {
		t.Errorf("the directory a symlink points to went to %d: the walk followed it", u)
	}
}

// BenchmarkChownInputRoot hands a genrule-like input root (13
// directories and a few files) below a build directory's path to the
// sandbox's ids, as every Run does:
//
//	go test ./runner -run '^$' -bench ChownInputRoot -benchtime 20000x -count 3
func BenchmarkChownInputRoot(b *testing.B) {
	requireRoot(b)
	root := filepath.Join(b.TempDir(), "var", "lib", "paddock", "worker", "builds", "1234-0", "root")
	for _, d := range []string{"bazel-out/k8-fastbuild/bin/pkg/sub", "external/tool/bin", "pkg/data", "tools/genrule"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(root, "pkg", "data", strconv.Itoa(i)), nil, 0o444); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if given, err := chownDirectories(root, 54321, 54321); err != nil || len(given) != 13 {
			b.Fatalf("%d directories, %v", len(given), err)
		}
	}
}

func TestWalkTree(t *testing.T) {
	t.Run("long paths", func(t *testing.T) {
		dir := t.TempDir()
		fd := mkdirDeep(t, dir, strings.Repeat("n", 250), 20)
		f, err := unix.Openat(fd, "f", unix.O_WRONLY|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer unix.Close(f)
		if err := unix.Fallocate(f, 0, 0, 1*mib); err != nil {
			t.Fatal(err)
		}
		if err := unix.Linkat(fd, "f", fd, "g", 0); err != nil {
			t.Fatal(err)
		}
		if err := unix.Symlinkat("/", fd, "up"); err != nil {
			t.Fatal(err)
		}
		u, err := walkDir(t, dir)
		// The root, 20 directories, f, g and up; f's blocks once.
		if err != nil || u.files != 24 || u.bytes < 1*mib || u.bytes > 2*mib {
			t.Errorf("walkTree = %+v, %v; want 24 entries and 1 MiB", u, err)
		}
	})
	// A directory never shrinks: one emptied of many long names keeps
	// its blocks, and they count.
	t.Run("emptied directory", func(t *testing.T) {
		dir := t.TempDir()
		big := filepath.Join(dir, "big")
		if err := os.Mkdir(big, 0o755); err != nil {
			t.Fatal(err)
		}
		name := func(i int) string { return filepath.Join(big, fmt.Sprintf("%0200d", i)) }
		for i := range 10000 {
			if err := os.WriteFile(name(i), nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for i := range 10000 {
			if err := os.Remove(name(i)); err != nil {
				t.Fatal(err)
			}
		}
		var st unix.Stat_t
		if err := unix.Stat(big, &st); err != nil {
			t.Fatal(err)
		}
		if st.Blocks*512 < 1*mib {
			t.Skipf("this file system's directories do not grow (%d bytes)", st.Blocks*512)
		}
		u, err := walkDir(t, dir)
		if err != nil || u.bytes < st.Blocks*512 {
			t.Errorf("walkTree = %+v, %v; want the emptied directory's %d bytes counted", u, err, st.Blocks*512)
		}
	})
	// Every directory counts at least 4 KiB, whatever the filesystem
	// says (tmpfs and btrfs say none).
	t.Run("directories", func(t *testing.T) {
		dir := t.TempDir()
		for i := range 100 {
			if err := os.Mkdir(filepath.Join(dir, strconv.Itoa(i)), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if u, err := walkDir(t, dir); err != nil || u.files != 101 || u.bytes < 101*minDirBytes {
			t.Errorf("walkTree = %+v, %v; want 101 entries of at least %d bytes each", u, err, minDirBytes)
		}
	})
	// The directories the worker handed over count by number and only
	// past what they took then; those made since count in full.
	t.Run("given directories", func(t *testing.T) {
		dir := t.TempDir()
		mkdirs := func(prefix string, n int) {
			for i := range n {
				if err := os.MkdirAll(filepath.Join(dir, "a", prefix+strconv.Itoa(i)), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
		mkdirs("given", 1000)
		given, err := chownDirectories(dir, os.Getuid(), os.Getgid())
		if err != nil || len(given) != 1002 {
			t.Fatalf("chownDirectories found %d directories, %v; want 1002", len(given), err)
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		if u, err := walkTree(fd, func(uint32) bool { return true }, given); err != nil || u != (diskUse{files: 1002}) {
			t.Errorf("walkTree of what was given = %+v, %v; want 1002 entries and no bytes", u, err)
		}
		// "a" grows as it takes 1,000 more names; that counts too.
		var before unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, "a"), &before); err != nil {
			t.Fatal(err)
		}
		mkdirs("new", 1000)
		var after unix.Stat_t
		if err := unix.Stat(filepath.Join(dir, "a"), &after); err != nil {
			t.Fatal(err)
		}
		fd, err = unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := 1000*minDirBytes + (after.Blocks-before.Blocks)*512
		if u, err := walkTree(fd, func(uint32) bool { return true }, given); err != nil || u.files != 2002 || u.bytes != want {
			t.Errorf("walkTree = %+v, %v; want 2002 entries and %d bytes (1,000 new directories and what \"a\" grew by)", u, err, want)
		}
	})
	t.Run("too deep", func(t *testing.T) {
		dir := t.TempDir()
		mkdirDeep(t, dir, "d", maxWalkDepth)
		if u, err := walkDir(t, dir); !errors.Is(err, errTooDeep) {
			t.Errorf("walkTree = %+v, %v; want %v", u, err, errTooDeep)
		}
	})
	t.Run("deepest allowed", func(t *testing.T) {
		dir := t.TempDir()
		mkdirDeep(t, dir, "d", maxWalkDepth-1)
		if u, err := walkDir(t, dir); err != nil || u.files != maxWalkDepth {
			t.Errorf("walkTree = %+v, %v; want %d entries", u, err, maxWalkDepth)
		}
	})
}

// TestCountHeld: only regular files with no link left, on the input
// root's device and owned by the sandbox, count; each inode once.
func TestCountHeld(t *testing.T) {
	const dev, mine, theirs = 7, 2_000_001, 0
	file := func(ino uint64, linked bool, dev uint64, uid uint32, mode uint32) unix.Stat_t {
		st := unix.Stat_t{Ino: ino, Dev: dev, Uid: uid, Mode: mode, Blocks: 8}
		if linked {
			st.Nlink = 1
		}
		return st
	}
	owns := func(uid uint32) bool { return uid == mine }
	for _, tc := range []struct {
		name string
		held []unix.Stat_t
		want diskUse
	}{
		{"deleted", []unix.Stat_t{file(1, false, dev, mine, unix.S_IFREG)}, diskUse{bytes: 4096, files: 1}},
		{"held twice", []unix.Stat_t{file(1, false, dev, mine, unix.S_IFREG), file(1, false, dev, mine, unix.S_IFREG)}, diskUse{bytes: 4096, files: 1}},
		{"still linked: the walk counts it", []unix.Stat_t{file(1, true, dev, mine, unix.S_IFREG)}, diskUse{}},
		{"another filesystem", []unix.Stat_t{file(1, false, dev+1, mine, unix.S_IFREG)}, diskUse{}},
		{"not the sandbox's", []unix.Stat_t{file(1, false, dev, theirs, unix.S_IFREG)}, diskUse{}},
		{"not a file", []unix.Stat_t{file(1, false, dev, mine, unix.S_IFDIR)}, diskUse{}},
	} {
		if got := countHeld(tc.held, dev, owns); got != tc.want {
			t.Errorf("%s: countHeld = %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

// TestProcessHeld: processHeld finds a file this process deleted while
// holding it open, and one it deleted while holding only a mapping.
func TestProcessHeld(t *testing.T) {
	requireRoot(t) // /proc/PID/map_files
	dir := t.TempDir()
	open := func(name string) *os.File {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR|os.O_CREATE, 0o644)
		if err == nil {
			_, err = f.Write(make([]byte, 64<<10))
		}
		if err == nil {
			err = os.Remove(f.Name())
		}
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	opened := open("opened")
	defer opened.Close()
	mapped := open("mapped")
	m, err := unix.Mmap(int(mapped.Fd()), 0, 64<<10, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = unix.Munmap(m) }() // teardown: the checks are done
	var want [2]unix.Stat_t
	if err := unix.Fstat(int(opened.Fd()), &want[0]); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(int(mapped.Fd()), &want[1]); err != nil {
		t.Fatal(err)
	}
	mapped.Close()

	found := map[uint64]bool{}
	for _, st := range processHeld(os.Getpid()) {
		found[st.Ino] = true
	}
	for i, name := range []string{"opened", "mapped"} {
		if !found[want[i].Ino] {
			t.Errorf("processHeld did not find the deleted file held %s (inode %d)", name, want[i].Ino)
		}
	}
	u := countHeld(processHeld(os.Getpid()), want[0].Dev, func(uid uint32) bool { return uid == want[0].Uid })
	if u.files < 2 || u.bytes < 2*64<<10 {
		t.Errorf("countHeld = %+v, want at least both files", u)
	}
}

// pacedFill is a shell command that makes total entries in the working
// directory with cmd (mkdir, touch), in 50 batches with a tenth of a
// second between them: at least five seconds for all of them. The guard
// looks every 100 ms and walks at least once a second, so a test can
// assert that it stopped the action long before the end unless the guard
// falls five seconds behind (under the race detector with both cores
// busy it stopped the fills at a fifth of their entries); unpaced, the
// command made all 100,000 directories within one late walk, and the
// verdict was the machine's speed.
func pacedFill(cmd string, total int) string {
	return fmt.Sprintf(`i=0; while [ $i -lt 50 ]; do seq -f "$i-%%g" 1 %d | xargs %s || exit 1; i=$((i+1)); sleep 0.1; done`, total/50, cmd)
}

// processHeld is what a scan of process pid alone holds.
func processHeld(pid int) []unix.Stat_t {
	h := heldFiles{seen: map[[2]uint64]bool{}}
	h.process(pid)
	return h.held
}
