package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/paddock-build/paddock/bench"
	"github.com/paddock-build/paddock/configs"
)

const benchUsage = `usage: paddock bench SCENARIO --endpoint HOST:PORT [flags]

Scenarios (each speaks plain REv2, so any farm can be measured):
  actions    N unique trivial actions at concurrency C
  inputs     actions whose input root holds FILES files of SIZE bytes, cold and warm
  outputs    actions writing FILES files of BYTES bytes in all
  cas        ByteStream upload/download of N blobs of SIZE bytes, and FindMissingBlobs
  standard   the standard set, each bounded to well under a minute on 2 cores
`

func runBench(ctx context.Context, args []string) error {
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
	files := fs.Int("files", 10000, "inputs/outputs: files per action")
	size := fs.String("size", "1KiB", "inputs: bytes per file; cas: bytes per blob")
	total := fs.String("bytes", "10MiB", "outputs: bytes per action in all")
	asJSON := fs.Bool("json", false, "print the reports as JSON")
	var platform, headers pairFlags
	fs.Var(&platform, "platform", "platform property NAME=VALUE for every action (repeatable)")
	fs.Var(&headers, "header", "gRPC header NAME=VALUE on every call (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	sizeB, err := configs.ParseByteSize(*size)
	if err != nil {
		return fmt.Errorf("--size: %w", err)
	}
	totalB, err := configs.ParseByteSize(*total)
	if err != nil {
		return fmt.Errorf("--bytes: %w", err)
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()
	opts := bench.Options{Instance: *instance, Platform: platform.toMap(), Headers: headers.toMap(), Concurrency: *conc}
	if info, err := os.Stderr.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
		opts.Progress = os.Stderr
	}
	c := bench.NewClient(conn, opts)
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
	switch scenario {
	case "actions":
		err = run(c.Actions(ctx, *n))
	case "inputs":
		if err = run(c.Inputs(ctx, *n, *files, int(sizeB), true)); err == nil {
			err = run(c.Inputs(ctx, *n, *files, int(sizeB), false))
		}
	case "outputs":
		err = run(c.Outputs(ctx, *n, *files, int64(totalB)))
	case "cas":
		var rs []*bench.Report
		rs, err = c.CAS(ctx, *n, int(sizeB), 20)
		add(rs...)
	case "standard":
		err = standardSet(ctx, c, add)
	default:
		fmt.Fprint(os.Stderr, benchUsage)
		return fmt.Errorf("unknown scenario %q", scenario)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(reports)
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
