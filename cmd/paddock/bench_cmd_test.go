package main

import (
	"errors"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

var cpuLine = regexp.MustCompile(`(?m)^cpu: wall_s=([0-9.]+) machine_user_ms=(\d+) machine_sys_ms=(\d+) machine_steal_ms=(\d+)(?: farm_user_ms=(\d+) farm_sys_ms=(\d+))?$`)

// `paddock bench cpu` counts the command's CPU: with this test as the
// "farm", the bench process and the command it runs are in the farm's
// process tree, and the machine's figure covers at least as much.
func TestBenchCPUCommand(t *testing.T) {
	// A shell loop: a few hundred ms of CPU, all user time.
	burn := exec.Command(binary, "bench", "cpu", "--farm-pid", strconv.Itoa(os.Getpid()), "--",
		"sh", "-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done")
	out, err := burn.CombinedOutput()
	if err != nil {
		t.Fatalf("bench cpu: %v\n%s", err, out)
	}
	m := cpuLine.FindStringSubmatch(string(out))
	if m == nil || m[5] == "" {
		t.Fatalf("bench cpu printed %q, want a cpu: line with the farm's figures", out)
	}
	n := func(i int) int { v, _ := strconv.Atoi(m[i]); return v }
	machine, farm := n(2)+n(3), n(5)+n(6)
	t.Logf("%s", m[0])
	if farm < 50 {
		t.Errorf("farm CPU %d ms for a shell loop of 200,000 iterations, want at least 50 ms", farm)
	}
	if machine+20 < farm {
		t.Errorf("machine CPU %d ms < farm CPU %d ms", machine, farm)
	}

	// A failing command: the figures, then its failure.
	out, err = exec.Command(binary, "bench", "cpu", "--", "sh", "-c", "exit 3").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !cpuLine.Match(out) || !regexp.MustCompile(`exit status 3`).Match(out) {
		t.Errorf("bench cpu of a failing command: %v\n%s\nwant the cpu: line, the command's status and a failure", err, out)
	}
	if m := cpuLine.FindStringSubmatch(string(out)); m != nil && m[5] != "" {
		t.Errorf("without --farm-pid: %q has farm figures", m[0])
	}
}
