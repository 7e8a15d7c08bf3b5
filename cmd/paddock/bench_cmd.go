package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/paddock-build/paddock/bench"
	"github.com/paddock-build/paddock/configs"
)

const benchUsage = `usage: paddock bench SCENARIO --endpoint HOST:PORT [--farm-pid PID] [flags]
       paddock bench cpu [--farm-pid PID] -- COMMAND [ARG...]

Scenarios (each speaks plain REv2, so any farm can be measured):
  actions    N unique trivial actions at concurrency C
  inputs     actions whose input root holds FILES files of SIZE bytes, cold and warm
  outputs    actions writing FILES files of BYTES bytes in all
  cas        ByteStream upload/download of N blobs of SIZE bytes, and FindMissingBlobs
  cached     N Executes of one action whose cached result names FILES output files
             (written with UpdateActionResult), each answered from the action cache
  standard   the standard set, each bounded to well under a minute on 2 cores

Every scenario also reports CPU time per operation over its run: the whole
machine's (from /proc/stat: user+nice as user, system+irq+softirq as system;
every process counts, this load generator included) and, with --farm-pid,
the farm's: the process tree rooted at PID with the children it reaped (for
paddock up: storage, scheduler, worker, runner and every sandbox), and the
farm process's peak resident memory since it started.

bench cpu runs COMMAND (a Bazel build, say) and then prints on stderr its
wall time and the machine's (and the farm's) CPU time over its run, as:
  cpu: wall_s=S machine_user_ms=MS machine_sys_ms=MS machine_steal_ms=MS [farm_user_ms=MS farm_sys_ms=MS]
machine_steal_ms is the time the machine's virtual CPUs waited for their
hypervisor while they had work (/proc/stat's steal), counted in no other
figure.
`

func runBench(ctx context.Context, args []string) error {
	if len(args) > 0 && helpAsked(args[:1]) {
		fmt.Print(benchUsage)
		return nil
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, benchUsage)
		return fmt.Errorf("a scenario is required")
	}
	scenario := args[0]
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(os.Stderr, benchUsage); fs.PrintDefaults() }
	endpoint := fs.String("endpoint", "127.0.0.1:8980", "REv2 endpoint (host:port)")
	instance := fs.String("instance", "", "REv2 instance name")
	n := fs.Int("n", 200, "operations (actions or blobs)")
	conc := fs.Int("c", 8, "concurrency")
	files := fs.Int("files", 10000, "inputs/outputs: files per action; cached: output files in the cached result")
	size := fs.String("size", "1KiB", "inputs: bytes per file; cas: bytes per blob")
	total := fs.String("bytes", "10MiB", "outputs: bytes per action in all")
	asJSON := fs.Bool("json", false, "print the reports as JSON")
	farmPID := fs.Int("farm-pid", 0, "pid of the farm under test, when it runs on this machine (paddock up): report its process tree's CPU per operation and its peak resident memory")
	var platform, headers pairFlags
	fs.Var(&platform, "platform", "platform property NAME=VALUE for every action (repeatable)")
	fs.Var(&headers, "header", "gRPC header NAME=VALUE on every call (repeatable)")
	var dial dialSecurity
	dial.registerAs(fs, "", "the farm")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *farmPID != 0 {
		if _, err := bench.ProcessTreeCPU(*farmPID); err != nil {
			return fmt.Errorf("--farm-pid: %w", err)
		}
	}
	if scenario == "cpu" {
		return benchCPU(ctx, *farmPID, fs.Args())
	}
	sizeB, err := configs.ParseByteSize(*size)
	if err != nil {
		return fmt.Errorf("--size: %w", err)
	}
	totalB, err := configs.ParseByteSize(*total)
	if err != nil {
		return fmt.Errorf("--bytes: %w", err)
	}
	dialOpts, err := dial.dialOptions(slog.Default())
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*endpoint, append(dialOpts,
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))...)
	if err != nil {
		return err
	}
	defer conn.Close()
	opts := bench.Options{Instance: *instance, Platform: platform.toMap(), Headers: headers.toMap(), Concurrency: *conc, FarmPID: *farmPID}
	if info, err := os.Stderr.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
		opts.Progress = os.Stderr
	}
	c := bench.NewClient(conn, opts)
	reports, err := runScenario(ctx, c, scenario, scenarioSizes{n: *n, files: *files, size: int(sizeB), total: int64(totalB)})
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if werr := enc.Encode(reports); werr != nil {
			return fmt.Errorf("write the report: %w", werr)
		}
	} else {
		fmt.Print(bench.Table(reports))
	}
	if err != nil {
		return err
	}
	for _, r := range reports {
		if r.Errors > 0 {
			return fmt.Errorf("%s: %d of %d operations failed; first: %s", r.Scenario, r.Errors, r.Requested, r.FirstError)
		}
	}
	return nil
}

// scenarioSizes are a bench run's -n, -files, -size and -bytes.
type scenarioSizes struct {
	n, files, size int
	total          int64
}

// runScenario runs one scenario (or the standard set) and returns its
// reports, as far as they got.
func runScenario(ctx context.Context, c *bench.Client, scenario string, z scenarioSizes) ([]*bench.Report, error) {
	var reports []*bench.Report
	add := func(rs ...*bench.Report) {
		for _, r := range rs {
			if r != nil {
				reports = append(reports, r)
			}
		}
	}
	run := func(r *bench.Report, err error) error {
		if r != nil {
			add(r)
		}
		return err
	}
	var err error
	switch scenario {
	case "actions":
		err = run(c.Actions(ctx, z.n))
	case "inputs":
		if err = run(c.Inputs(ctx, z.n, z.files, z.size, true)); err == nil {
			err = run(c.Inputs(ctx, z.n, z.files, z.size, false))
		}
	case "outputs":
		err = run(c.Outputs(ctx, z.n, z.files, z.total))
	case "cached":
		err = run(c.Cached(ctx, z.n, z.files))
	case "cas":
		var rs []*bench.Report
		rs, err = c.CAS(ctx, z.n, z.size, 20)
		add(rs...)
	case "standard":
		err = standardSet(ctx, c, add)
	default:
		fmt.Fprint(os.Stderr, benchUsage)
		return nil, fmt.Errorf("unknown scenario %q", scenario)
	}
	return reports, err
}

// standardSet is what `make bench` runs: every scenario, sized so that
// each stays well under a minute on a 2-core machine.
func standardSet(ctx context.Context, c *bench.Client, add func(...*bench.Report)) error {
	steps := []func() error{
		func() error { r, err := c.Actions(ctx, 300); add(r); return err },
		func() error { r, err := c.Inputs(ctx, 3, 10000, 1024, true); add(r); return err },
		func() error { r, err := c.Inputs(ctx, 10, 10000, 1024, false); add(r); return err },
		func() error { r, err := c.Outputs(ctx, 10, 1000, 10<<20); add(r); return err },
		func() error { rs, err := c.CAS(ctx, 16, 4<<20, 20); add(rs...); return err },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			return err
		}
	}
	return nil
}

// benchCPU runs a command (a Bazel build, say) and prints the CPU time the
// machine, and the farm's process tree if farmPID is set, used during it,
// as one line of NAME=VALUE pairs on stderr for scripts
// (scripts/bench-bazel.sh) to read. The command's exit status is returned
// as an error after the line is printed.
func benchCPU(ctx context.Context, farmPID int, argv []string) error {
	if len(argv) == 0 {
		return fmt.Errorf("a command is required: paddock bench cpu [--farm-pid PID] -- COMMAND [ARG...]")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	machine0, steal0, err := bench.MachineCPUAndSteal()
	if err != nil {
		return err
	}
	var farm0 map[string]bench.CPUTime
	if farmPID != 0 {
		if farm0, err = bench.ProcessTreeCPUByProcess(farmPID); err != nil {
			return fmt.Errorf("--farm-pid: %w", err)
		}
	}
	start := time.Now()
	runErr := cmd.Run()
	wall := time.Since(start)
	machine1, steal1, err := bench.MachineCPUAndSteal()
	if err != nil {
		return err
	}
	ms := func(d time.Duration) int64 { return d.Milliseconds() }
	m := machine1.Sub(machine0)
	line := fmt.Sprintf("cpu: wall_s=%.3f machine_user_ms=%d machine_sys_ms=%d machine_steal_ms=%d", wall.Seconds(), ms(m.User), ms(m.System), ms(steal1-steal0))
	var split []string
	if farmPID != 0 {
		farm1, err := bench.ProcessTreeCPUByProcess(farmPID)
		if err != nil {
			return fmt.Errorf("--farm-pid: after the command: %w", err)
		}
		for name, c := range farm1 {
			used := c.Sub(farm0[name])
			split = append(split, fmt.Sprintf("cpu-process: user_ms=%d sys_ms=%d name=%s", ms(used.User), ms(used.System), name))
		}
		t := bench.Sum(farm1).Sub(bench.Sum(farm0))
		line += fmt.Sprintf(" farm_user_ms=%d farm_sys_ms=%d", ms(t.User), ms(t.System))
	}
	fmt.Fprintln(os.Stderr, line)
	// The farm's CPU split by process (see bench.ProcessTreeCPUByProcess),
	// one line each, after the summary line.
	sort.Strings(split)
	for _, l := range split {
		fmt.Fprintln(os.Stderr, l)
	}
	if runErr != nil {
		return fmt.Errorf("%s: %w", argv[0], runErr)
	}
	return nil
}
