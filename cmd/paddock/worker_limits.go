package main

import (
	"flag"

	"github.com/paddock-build/paddock/configs"
)

// registerWorkerFlags adds the flags `paddock worker` and `paddock up`
// share to fs, each writing into cfg (a worker's config or up's worker
// section): its concurrency, file cache size, and bounds on an action's
// input root and outputs.
func registerWorkerFlags(fs *flag.FlagSet, cfg *configs.Worker) {
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "actions run at once (concurrency)")
	byteSizeFlag(fs, &cfg.MaxOutputBytes, "max-output-bytes", "bound on an action's output files, by apparent size (max_output_bytes)")
	fs.Int64Var(&cfg.MaxOutputFiles, "max-output-files", cfg.MaxOutputFiles, "bound on an action's output entries (max_output_files)")
	fs.IntVar(&cfg.MaxOutputDepth, "max-output-depth", cfg.MaxOutputDepth, "bound on the depth of an output directory (max_output_depth)")
	byteSizeFlag(fs, &cfg.MaxInputBytes, "max-input-bytes", "bound on an input root's files, expanded (max_input_bytes)")
	fs.Int64Var(&cfg.MaxInputFiles, "max-input-files", cfg.MaxInputFiles, "bound on an input root's entries, expanded (max_input_files)")
	fs.IntVar(&cfg.MaxInputDepth, "max-input-depth", cfg.MaxInputDepth, "bound on an input root's depth (max_input_depth)")
}
