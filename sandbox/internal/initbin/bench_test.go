package initbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"
)

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
