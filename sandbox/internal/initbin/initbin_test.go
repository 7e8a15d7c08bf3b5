package initbin

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paddock-build/paddock/sandbox/internal/initplan"
	"github.com/paddock-build/paddock/sandbox/internal/initsrc"
)

// TestBinaryFresh fails when the init's sources changed after the
// committed binary was compiled: run `make init`.
func TestBinaryFresh(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("no compiled init for " + runtime.GOARCH)
	}
	want, err := initsrc.SourcesDigest("../../..")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(BuiltFrom); got != want {
		t.Fatalf("the compiled init is stale (built from %s, sources are %s): run `make init`", got, want)
	}
}

// TestBinaryIsFreestanding: the init is a small static x86_64 executable
// with no interpreter and no dynamic section, so starting it loads no
// shared library and runs no C library or language runtime start-up.
func TestBinaryIsFreestanding(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("no compiled init for " + runtime.GOARCH)
	}
	if len(Binary) > 64<<10 {
		t.Errorf("the init is %d bytes; it is meant to be a few tens of KiB", len(Binary))
	}
	f, err := elf.NewFile(bytes.NewReader(Binary))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		t.Errorf("machine %v, type %v: want a position-dependent x86_64 executable", f.Machine, f.Type)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the init has a %v program header", p.Type)
		}
		if p.Type == elf.PT_GNU_STACK && p.Flags&elf.PF_X != 0 {
			t.Error("the init asks for an executable stack")
		}
	}
}

// startInit runs the compiled init as pid 1 of new user, mount and pid
// namespaces (so that a plan it wrongly accepted could touch nothing of
// the host) with frame on its control pipe, and returns its exit status
// and what it wrote on the status pipe.
func startInit(t *testing.T, frame []byte) (int, []byte) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(bin, Binary, 0o755); err != nil {
		t.Fatal(err)
	}
	ctlR, ctlW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stR, stW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.ExtraFiles = []*os.File{ctlR, stW}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getuid(), Size: 1}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: os.Getgid(), Size: 1}},
		// As the spawner does: the init sets the command's groups.
		GidMappingsEnableSetgroups: true,
	}
	if err := cmd.Start(); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.ENOSPC) {
			t.Skipf("no user namespaces here: %v", err)
		}
		t.Fatal(err)
	}
	ctlR.Close()
	stW.Close()
	_, _ = ctlW.Write(frame)
	ctlW.Close()
	status, err := io.ReadAll(stR)
	stR.Close()
	if err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), status
}

func framed(payload []byte) []byte {
	return append(binary.LittleEndian.AppendUint32(nil, uint32(len(payload))), payload...)
}

// TestInitRunsAPlan: the init decodes what initplan.EncodePlan writes,
// runs the command and reports its exit status.
func TestInitRunsAPlan(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("no compiled init for " + runtime.GOARCH)
	}
	plan := &initplan.Plan{Rootfs: "/", Args: []string{"sh", "-c", "exit 7"}, Env: []string{"PATH=/usr/bin:/bin"},
		Cwd: "/", Bounding: 1<<41 - 1, LastCap: 40}
	code, status := startInit(t, initplan.EncodePlan(plan))
	st, err := initplan.DecodeStatus(status)
	if err != nil {
		t.Fatalf("status %q: %v", status, err)
	}
	if code != 0 || st.Error != "" || st.ExitCode != 7 {
		t.Fatalf("init exit %d, status %+v; want 0 and the command's exit 7", code, st)
	}

	// A command that cannot start is the command's error (NotStarted),
	// with the errno its exec or its directory got.
	for _, tc := range []struct {
		args []string
		cwd  string
		want string
	}{
		{[]string{"/no/such/command"}, "/", "start /no/such/command: no such file or directory"},
		{[]string{"/etc/passwd"}, "/", "start /etc/passwd: permission denied"},
		{[]string{"sh"}, "/no/such/dir", "start sh: no such file or directory"},
		{[]string{"no-such-command"}, "/", `executable "no-such-command" not found in PATH "/usr/bin:/bin"`},
	} {
		p := *plan
		p.Args, p.Cwd = tc.args, tc.cwd
		code, status := startInit(t, initplan.EncodePlan(&p))
		st, err := initplan.DecodeStatus(status)
		if err != nil || code != 1 || !st.NotStarted || st.Error != tc.want {
			t.Errorf("%v in %s: init exit %d, status %+v (%v); want exit 1, not started, %q", tc.args, tc.cwd, code, st, err, tc.want)
		}
	}

	// Without PATH an unqualified name is a file of the working directory
	// (docs/runner.md), and nowhere else.
	p := *plan
	p.Args, p.Env, p.Cwd = []string{"false"}, nil, "/usr/bin"
	code, status = startInit(t, initplan.EncodePlan(&p))
	if st, err := initplan.DecodeStatus(status); err != nil || code != 0 || st.NotStarted || st.ExitCode != 1 {
		t.Errorf("false in /usr/bin without PATH: init exit %d, status %+v (%v); want /usr/bin/false run, exit 1", code, st, err)
	}
	p.Cwd = "/"
	code, status = startInit(t, initplan.EncodePlan(&p))
	if st, err := initplan.DecodeStatus(status); err != nil || code != 1 || !st.NotStarted {
		t.Errorf("false in / without PATH: init exit %d, status %+v (%v); want not started", code, st, err)
	}
}

// TestMalformedPlansAreRefused: every cut of a plan, a byte too many, and
// hand-broken fields are refused with a "malformed init plan" status
// before the init does anything else; a control pipe closed before any
// plan (an unused warm init) is a quiet exit.
func TestMalformedPlansAreRefused(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("no compiled init for " + runtime.GOARCH)
	}
	plan := &initplan.Plan{
		Rootfs: "/", Mounts: []initplan.Mount{{Kind: initplan.MountFS, Source: "tmpfs", Dest: "/tmp", FSType: "tmpfs"}},
		Args: []string{"/bin/true"}, Env: []string{"PATH=/bin"}, Cwd: "/", Groups: []uint32{5},
		Rlimits: []initplan.Rlimit{{Resource: 7, Cur: 64, Max: 64}}, Seccomp: make([]byte, 8),
	}
	payload := initplan.EncodePlan(plan)[initplan.FrameHeader:]
	cases := map[string][]byte{
		"a byte too many": framed(append(append([]byte(nil), payload...), 0)),
		"version 9":       framed(append([]byte{9}, payload[1:]...)),
		// The rootfs "/" is payload[1:3]; ReadonlyRoot is payload[3].
		"a boolean of 2":    framed(append(append(append([]byte(nil), payload[:3]...), 2), payload[4:]...)),
		"a NUL in a string": framed(append(append(append([]byte(nil), payload[:2]...), 0), payload[3:]...)),
		"a mount kind of 9": framed(append(append(append([]byte(nil), payload[:5]...), 9), payload[6:]...)),
		"a count past the end": framed(append(append(append([]byte(nil), payload[:4]...), 0xff, 0xff, 0x03),
			payload[5:]...)),
		"an empty frame":                        {0, 0, 0, 0},
		"a frame too large":                     binary.LittleEndian.AppendUint32(nil, initplan.MaxPlanSize+1),
		"a pipe closed in the middle of a plan": framed(payload)[:initplan.FrameHeader+len(payload)/2],
	}
	for cut := 1; cut < len(payload); cut++ {
		cases["cut at "+string(rune('0'+cut/100))+string(rune('0'+cut/10%10))+string(rune('0'+cut%10))] =
			framed(payload[:cut])
	}
	for name, frame := range cases {
		code, status := startInit(t, frame)
		st, err := initplan.DecodeStatus(status)
		if err != nil {
			t.Errorf("%s: status %q: %v", name, status, err)
			continue
		}
		if code != 1 || st.NotStarted || st.MissingSource ||
			!(strings.HasPrefix(st.Error, "malformed init plan") || strings.HasPrefix(st.Error, "read plan: control pipe closed")) {
			t.Errorf("%s: init exit %d, status %+v; want exit 1 and a malformed plan", name, code, st)
		}
	}
	if code, status := startInit(t, nil); code != 0 || len(status) != 0 {
		t.Errorf("no plan: init exit %d, status %q; want a quiet exit", code, status)
	}
}

// BenchmarkStartExit measures what starting and ending a program costs per
// sandbox, as CPU per exec and exit (of this process's reaped children,
// fork included), back to back: the compiled init given no plan (a warm
// init that is never used: it reads EOF on its control pipe and exits),
// and an empty static Go program, which is what the init cost before it
// was written in C. On a VM where CPUID and page faults trap, the Go
// runtime's start-up is most of that second figure.
//
//	go test ./sandbox/internal/initbin -run '^$' -bench StartExit -benchtime 300x
func BenchmarkStartExit(b *testing.B) {
	if runtime.GOARCH != "amd64" {
		b.Skip("no compiled init for " + runtime.GOARCH)
	}
	dir := b.TempDir()
	initPath := filepath.Join(dir, "init")
	if err := os.WriteFile(initPath, Binary, 0o755); err != nil {
		b.Fatal(err)
	}
	b.Run("init", func(b *testing.B) { benchExec(b, initPath) })
	b.Run("empty-go", func(b *testing.B) {
		goTool, err := exec.LookPath("go")
		if err != nil {
			b.Skip("no go tool to build the empty program")
		}
		src := filepath.Join(dir, "empty")
		if err := os.MkdirAll(src, 0o755); err != nil {
			b.Fatal(err)
		}
		files := map[string]string{
			"go.mod":  "module empty\n\ngo 1.22\n",
			"main.go": "package main\n\nimport \"os\"\n\nfunc main() { os.Exit(0) }\n",
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(src, name), []byte(text), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		bin := filepath.Join(dir, "empty-go")
		build := exec.Command(goTool, "build", "-o", bin, ".")
		build.Dir = src
		build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
		benchExec(b, bin)
	})
}

// benchExec starts path b.N times, one after the other, with /dev/null as
// its descriptors 0 to 4, and reports the CPU its processes used.
func benchExec(b *testing.B, path string) {
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		b.Fatal(err)
	}
	defer devNull.Close()
	run := func() {
		cmd := exec.Command(path)
		cmd.ExtraFiles = []*os.File{devNull, devNull}
		if err := cmd.Run(); err != nil {
			b.Fatalf("%s: %v", path, err)
		}
	}
	run() // page the program in outside the measurement
	b.ResetTimer()
	before := childrenCPU(b)
	for i := 0; i < b.N; i++ {
		run()
	}
	b.ReportMetric(float64(childrenCPU(b)-before)/1e6/float64(b.N), "cpu-ms/op")
}

func childrenCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
