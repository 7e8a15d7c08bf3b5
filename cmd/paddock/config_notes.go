package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/paddock-build/paddock/configs"
	"github.com/paddock-build/paddock/worker"
)

// --print-config prints a file --config reads back. Some keys take their
// value from the machine the role starts on when they are 0 or empty (the
// runner's concurrency is the number of CPUs, its default memory limit a
// share of the host's memory). The printed file keeps the 0, which is
// what such a file must say to mean the same on another machine, and a
// comment beside it names the value it stands for here, so that an
// operator reading `concurrency: 0` knows what the runner will use.

// machine is what those values are computed from: the figures the roles
// read at start.
type machine struct {
	memory   int64 // total bytes, as the runner reads it (sysinfo)
	cpus     int
	hostname string
}

// thisMachine reads the figures of the machine the command runs on. A
// figure it cannot read is left zero and its notes say so.
func thisMachine() machine {
	m := machine{cpus: runtime.NumCPU()}
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) == nil {
		m.memory = int64(si.Totalram) * int64(si.Unit)
	}
	m.hostname, _ = os.Hostname()
	return m
}

// runnerNotes are the notes for a runner file (or up's runner section,
// under prefix "runner."): each of its 0 or empty keys that the runner
// resolves, with what it resolves to on m, by the runner's own rule
// (runner.Config.WithHostLimits, which runner.New applies).
func runnerNotes(r configs.Runner, m machine, prefix string) map[string]string {
	notes := map[string]string{}
	c := r.Config()
	eff := c.WithHostLimits(m.memory, m.cpus)
	if r.Concurrency == 0 {
		notes["concurrency"] = fmt.Sprintf("the number of CPUs: %d here", eff.Concurrency)
	}
	if r.MaxMemoryLimit == 0 {
		notes["max_memory_limit"] = "the host's memory: " + humanBytes(eff.MaxMemoryLimit) + " here"
	}
	defMem := eff.DefaultMemoryLimit
	if r.DefaultMemoryLimit == 0 {
		notes["default_memory_limit"] = "(the host's memory - a reserve) / concurrency: " + humanBytes(defMem) + " here"
	} else if defMem < int64(r.DefaultMemoryLimit) {
		notes["default_memory_limit"] = "capped to max_memory_limit: " + humanBytes(defMem) + " here"
	}
	if r.TmpSize == 0 {
		notes["tmp_size"] = "half the action's memory limit: " + humanBytes(defMem/2) + " here with the default limit"
	}
	if r.MaxShmSize == 0 {
		notes["max_shm_size"] = "the action's memory limit: " + humanBytes(defMem) + " here with the default limit"
	}
	if r.Images.Dir == "" {
		notes["images.dir"] = "<state_dir>/images: " + c.ImagesDir()
	}
	if r.Images.Platform == "" {
		notes["images.platform"] = "this machine's: linux/" + runtime.GOARCH + " here"
	}
	return prefixed(notes, prefix)
}

// workerNotes are the notes for a worker file (or up's worker section,
// under prefix "worker.").
func workerNotes(w configs.Worker, m machine, prefix string) map[string]string {
	notes := map[string]string{}
	if w.ID == "" {
		notes["id"] = fmt.Sprintf("the host name: %q here", m.hostname)
	}
	if w.Concurrency == 0 {
		notes["concurrency"] = "one action at a time"
	}
	if len(w.Platform) == 0 {
		var ps []string
		for _, p := range worker.DefaultPlatform() {
			ps = append(ps, p.Name+"="+p.Value)
		}
		notes["platform"] = "this machine's: " + strings.Join(ps, ", ") + " here"
	}
	in, out := worker.DefaultInputLimits(), worker.DefaultOutputLimits()
	for _, l := range []struct {
		key      string
		v, deflt int64
	}{
		{"max_input_files", w.MaxInputFiles, in.MaxFiles}, {"max_input_bytes", int64(w.MaxInputBytes), in.MaxBytes},
		{"max_input_depth", int64(w.MaxInputDepth), int64(in.MaxDepth)},
		{"max_output_files", w.MaxOutputFiles, out.MaxFiles}, {"max_output_bytes", int64(w.MaxOutputBytes), out.MaxBytes},
		{"max_output_depth", int64(w.MaxOutputDepth), int64(out.MaxDepth)},
	} {
		if l.v == 0 {
			notes[l.key] = fmt.Sprintf("the default: %d", l.deflt)
		}
	}
	return prefixed(notes, prefix)
}

// upNotes are the notes for up's file: its worker's and its runner's.
func upNotes(u configs.Up, m machine) map[string]string {
	notes := workerNotes(u.Worker, m, "worker.")
	for k, v := range runnerNotes(u.Runner, m, "runner.") {
		notes[k] = v
	}
	return notes
}

func prefixed(notes map[string]string, prefix string) map[string]string {
	if prefix == "" {
		return notes
	}
	out := make(map[string]string, len(notes))
	for k, v := range notes {
		out[prefix+k] = v
	}
	return out
}

// humanBytes is n in the largest binary unit at least 1 of it, to one
// decimal ("7.8GiB"): a comment for a reader, not a value to parse.
func humanBytes(n int64) string {
	if n <= 0 {
		return "unknown"
	}
	f, units := float64(n), []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.1f%s", f, units[i])
}
